"""Benchmark the multi-writer audit log: durable appends/s with several writer processes on one log.

Configurations, run one after the other in the same run on the same disk:
  * PostgreSQL, 3 writer processes (the issue's goal: >= 3,000 durable appends/s), and 1 for scale;
  * SQLite, 1 writer process (the embedded default) and 3 writer processes on the same file.

Each writer process is a real ``AuditLog`` (group commit; indices reserved in the database; one elected
leader integrates and signs) driven by ``--clients`` concurrent asyncio callers awaiting
``append_request``; every append counted returned after its transaction committed. PostgreSQL runs
with its defaults (fsync, synchronous_commit and full_page_writes on: durable), started by
``tests/pg_server.py`` in a temporary directory. After each configuration the whole log is verified.

Peer: Tessera (the transparency-log library behind Go's checksum database and Sigstore's new Rekor)
publishes ~300 entries/s on MySQL on a small VM and ~2,900/s on local disk (POSIX) with 12 cores; it
is Go, needs its own storage setup and is not installed offline, so its figures are quoted, not run.

Usage: .venv/bin/python bench/audit_writers.py [--seconds 10] [--clients 64]
Writes bench/results/audit_writers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from audit import record  # noqa: E402 - bench/audit.py's realistic request record
from bastion.audit import AuditLog, create_keys, load_public_key, open_store  # noqa: E402
from bastion.audit.keys import load_signing_key, public_key_path  # noqa: E402
from bastion.audit.verify import verify_log  # noqa: E402
from bastion.store import PostgresTarget, Target, close_pools  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "audit_writers.json"
TESSERA = {"mysql_small_vm_per_s": 300, "posix_local_disk_12_cores_per_s": 2900}


def _target(where: str) -> Target:
    return PostgresTarget(where, pool_size=4) if where.startswith("postgresql://") else Path(where)


async def _worker(where: str, key: Path, tag: str, start_at: float, seconds: float, clients: int) -> dict:
    leader = []
    log = AuditLog(
        open_store(_target(where)),
        signer=load_signing_key(key),
        sth_interval_s=1.0,
        on_leadership=lambda lead: leader.append(lead),
    )
    await asyncio.sleep(max(0.0, start_at - time.time()))
    end = start_at + seconds
    counted = 0
    numbers = iter(range(10**9))

    async def client() -> None:
        nonlocal counted
        for i in numbers:
            if time.time() >= end:
                return
            await log.append_request(record(i))
            if time.time() < end:  # counted only when it returned inside the window
                counted += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    head = await asyncio.to_thread(log.close)
    return {"tag": tag, "appends": counted, "led": any(leader), "final_head": head.tree_size if head else None}


def run_config(where: str, key: Path, writers: int, seconds: float, clients: int) -> dict:
    """Start ``writers`` processes on one log, all appending for ``seconds``; verify afterwards."""
    AuditLog(open_store(_target(where)), signer=load_signing_key(key)).close()  # schema before the race
    start_at = time.time() + 3.0  # every process imported and connected before the window opens
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", where, str(key), f"w{i}", str(start_at), str(seconds),
             str(clients)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(writers)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"a writer failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    total = sum(r["appends"] for r in results)
    store = open_store(_target(where))
    started = time.perf_counter()
    report = verify_log(store, load_public_key(public_key_path(key)))
    verify_s = time.perf_counter() - started
    store.close()
    if not report.ok or report.signed_size != report.entries:
        raise SystemExit(f"verify failed: {report.to_json()}")
    return {
        "writers": writers,
        "clients_per_writer": clients,
        "seconds": seconds,
        "appends": total,
        "per_s": total / seconds,
        "per_writer": results,
        "processes_that_led": sum(1 for r in results if r["led"]),  # in turn: the leader hands over at close
        "entries": report.entries,
        "heads": report.heads,
        "verify_s": verify_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--worker", nargs=6, metavar=("DB", "KEY", "TAG", "START", "SECONDS", "CLIENTS"))
    args = ap.parse_args()
    if args.worker:
        where, key, tag, start_at, seconds, clients = args.worker
        result = asyncio.run(_worker(where, Path(key), tag, float(start_at), float(seconds), int(clients)))
        print(json.dumps(result))
        return

    from tests import pg_server

    load_at_start = os.getloadavg()
    runs: dict[str, dict] = {}
    server = pg_server.start(durable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-bench-writers-") as tmp:
            work = Path(tmp)
            create_keys(work / "signing.key", work / "body.key")
            key = work / "signing.key"
            plan = [
                ("postgresql_3_writers", 3, "pg3"),
                ("postgresql_1_writer", 1, "pg1"),
                ("sqlite_1_writer", 1, None),
                ("sqlite_3_writers", 3, None),
            ]
            for name, writers, schema in plan:
                if schema is not None:
                    server.execute(f"CREATE SCHEMA {schema}")
                    where = server.url(schema=schema)
                else:
                    where = str(work / f"{name}.db")
                runs[name] = run_config(where, key, writers, args.seconds, args.clients)
                runs[name]["load_average_after"] = os.getloadavg()
                print(f"{name}: {runs[name]['per_s']:,.0f} durable appends/s", file=sys.stderr)
    finally:
        close_pools()
        server.stop()
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "postgresql": "Debian PostgreSQL via tests/pg_server.py, durable (fsync, synchronous_commit on)",
        "runs": runs,
        "peer_tessera_published": TESSERA,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
