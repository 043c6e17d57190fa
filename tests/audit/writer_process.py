"""A real writer process for the concurrency and crash tests (run as a script, not collected).

    python writer_process.py DB SIGNING_KEY TAG COUNT CLIENTS

DB is a SQLite file or a postgresql:// URL.

Appends COUNT request records (COUNT 0: until killed, at most 10**7) from CLIENTS concurrent tasks and
prints "SEQ REQUEST_ID" on stdout, flushed, after each append has *returned*: the parent holds exactly
the set of acknowledged appends.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bastion.audit import AuditLog, RequestRecord, open_store
from bastion.audit.keys import load_signing_key
from bastion.store import PostgresTarget, Target


async def main(db: Target, key: Path, tag: str, count: int, clients: int) -> None:
    log = AuditLog(open_store(db), signer=load_signing_key(key), sth_interval_s=0.2, sth_every=500)
    numbers = iter(range(count or 10**7))
    out = sys.stdout

    async def client() -> None:
        for i in numbers:
            rid = f"{tag}-{i}"
            ref = await log.append_request(
                RequestRecord(
                    rid,
                    f"key_{tag}",
                    "smollm2",
                    "sha256:" + "ab" * 32,
                    "llama_cpp",
                    "allow",
                    200,
                    request_body=b"q%d" % i,
                    response_body=b"a%d" % i,
                )  # fmt: skip
            )
            out.write(f"{ref.seq} {rid}\n")
            out.flush()

    await asyncio.gather(*(client() for _ in range(clients)))
    log.close()


if __name__ == "__main__":
    db, key, tag, count, clients = sys.argv[1:6]
    target: Target = PostgresTarget(db) if db.startswith("postgresql://") else Path(db)
    asyncio.run(main(target, Path(key), tag, int(count), int(clients)))
