"""Quotas: what one request's reserve + settle costs, before (limits in each process's memory) and after
(shared through the store: SQLite file, PostgreSQL), in one run; and reservations per second that
several processes get together from one store.

    PYTHONPATH=src:. .venv/bin/python bench/quota_ledger.py [--n 2000] [--processes 3] [--baseline-src DIR]

``--baseline-src``: an export of main's ``src/`` before shared quotas (the in-memory limiter), run in
the same way in a subprocess. PostgreSQL is a temporary server started like the tests' (Debian's
``postgresql``, Unix socket). Writes ``bench/results/quota_ledger.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
#: the bench gateway's limits (bench/gateway_overhead.py): far above what is sent, so nothing is refused
LIMITS = {"enabled": True, "key": {"rpm": 10**8, "tpm": 10**11, "budget_tokens": 10**11},
          "organisation": {"rpm": 10**8}}


def _side(target: str, n: int, start: float) -> dict[str, float]:
    """In this process: ``n`` reserve + settle pairs one after another; their latency and rate."""
    from bastion.config import QuotaSettings
    from bastion.quota.quotas import Quotas
    from bastion.quota.store import UsageStore
    from bastion.store import PostgresTarget

    where: Any = PostgresTarget(target) if target.startswith("postgresql") else Path(target)
    quotas = Quotas(QuotaSettings.model_validate(LIMITS), UsageStore(where))
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}

    async def run() -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            held = quotas.reserve("k1", ("g",), body, 16)
            if inspect.isawaitable(held):
                held = await held
            await quotas.settle(held, "m", 5, 1)
            times.append(time.perf_counter() - t0)
        return times

    time.sleep(max(0.0, start - time.time()))
    began = time.perf_counter()
    times = asyncio.run(run())
    wall = time.perf_counter() - began
    quotas.close()
    times.sort()
    return {"p50_us": times[len(times) // 2] * 1e6, "p99_us": times[int(len(times) * 0.99)] * 1e6,
            "per_s": n / wall}


def _spawn(src: str, target: str, n: int, processes: int) -> list[dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": src}
    start = time.time() + 4.0  # every process imports first, then all start together
    procs = [subprocess.Popen([sys.executable, __file__, "--side", target, "--n", str(n), "--start", str(start)],
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        out.append(json.loads(stdout))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--baseline-src")
    ap.add_argument("--side")
    ap.add_argument("--start", type=float, default=0.0)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(_side(args.side, args.n, args.start)))
        return
    sys.path.insert(0, str(BENCH.parent))
    from tests import pg_server

    src = str(BENCH.parent / "src")
    server = pg_server.start()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "load_average_start": os.getloadavg()}, "n": args.n}
    try:
        with tempfile.TemporaryDirectory() as d:
            sides = [("after: shared, SQLite", src, "sqlite"), ("after: shared, PostgreSQL", src, "pg")]
            if args.baseline_src:
                sides.insert(0, ("before: in memory (+ SQLite usage row)", str(Path(args.baseline_src).resolve()),
                                 "sqlite"))
            for i, (name, side_src, kind) in enumerate(sides):
                rows: dict[str, Any] = {}
                for procs in (1, args.processes):
                    if kind == "pg":
                        schema = f"bench{i}_{procs}"
                        server.execute(f"CREATE SCHEMA {schema}")
                        target = server.url(schema=schema)
                    else:
                        target = str(Path(d) / f"{i}-{procs}.db")
                    got = _spawn(side_src, target, args.n, procs)
                    rows[f"{procs}_process"] = {
                        "p50_us": statistics.median(g["p50_us"] for g in got),
                        "p99_us": max(g["p99_us"] for g in got),
                        "per_s_total": sum(g["per_s"] for g in got),
                    }
                results[name] = rows
                one, many = rows["1_process"], rows[f"{args.processes}_process"]
                print(f"{name:42s} 1 process: p50 {one['p50_us']:7.0f} us p99 {one['p99_us']:7.0f} us "
                      f"{one['per_s_total']:6.0f}/s | {args.processes} processes: p50 {many['p50_us']:7.0f} us "
                      f"{many['per_s_total']:6.0f}/s together")
    finally:
        server.stop()
    results["load_average_end"] = os.getloadavg()
    (BENCH / "results" / "quota_ledger.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
