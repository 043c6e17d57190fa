"""A real writer process for the concurrency and crash tests (run as a script, not collected).

    python writer_process.py DB SIGNING_KEY TAG COUNT CLIENTS [STH_INTERVAL_S]

DB is a SQLite file or a postgresql:// URL.

Appends COUNT request records (COUNT 0: until SIGTERM or killed, at most 10**7) from CLIENTS concurrent
tasks and prints, flushed:

* ``SEQ REQUEST_ID`` after each append has *returned*: the parent holds exactly the acknowledged set;
* ``LEAD 1 NS`` / ``LEAD 0 NS`` when this process takes / gives up the log's leadership (NS: the
  system-wide monotonic clock, comparable between processes; taken after acquiring, before releasing);
* ``CLOSED SIZE`` at the end: the size of the head ``close()`` returned (-1: none).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from pathlib import Path

from bastion.audit import AuditLog, RequestRecord, open_store
from bastion.audit.keys import load_signing_key
from bastion.store import PostgresTarget, Target

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


async def main(db: Target, key: Path, tag: str, count: int, clients: int, interval: float) -> None:
    # The handler first: a SIGTERM while the log is still opening (a loaded machine) must stop us cleanly.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    log = AuditLog(
        open_store(db),
        signer=load_signing_key(key),
        sth_interval_s=interval,
        sth_every=500,
        on_leadership=lambda lead: say(f"LEAD {int(lead)} {time.monotonic_ns()}"),
    )
    numbers = iter(range(count or 10**7))

    async def client() -> None:
        for i in numbers:
            if stop.is_set():
                return
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
            say(f"{ref.seq} {rid}")

    await asyncio.gather(*(client() for _ in range(clients)))
    head = await asyncio.to_thread(log.close)
    say(f"CLOSED {head.tree_size if head else -1}")


if __name__ == "__main__":
    db, key, tag, count, clients = sys.argv[1:6]
    interval = float(sys.argv[6]) if len(sys.argv) > 6 else 0.2
    target: Target = PostgresTarget(db) if db.startswith("postgresql://") else Path(db)
    asyncio.run(main(target, Path(key), tag, int(count), int(clients), interval))
