"""Load: 500 concurrent streaming clients through 3 replicas on PostgreSQL, beside 1 replica on SQLite.

The upstream is a real HTTP server on 127.0.0.1 that streams like a model (tests/serve/sse_upstream.py:
``--chunks`` content events ``--gap-ms`` apart, a finish_reason event, usage, ``[DONE]``; in its own
process), so what is measured is the gateway. In one run, each for ``--duration`` seconds after a short
warm-up, with the same clients:

* ``direct``: the clients straight to the upstream (what this machine gives without any gateway);
* ``sqlite x1``: one ``bastion serve`` replica on SQLite (the embedded default);
* ``postgresql x3``: three replicas sharing one PostgreSQL (``tests/pg_server.py``, fsync on).

Replicas are started by tests/serve/replicas.py (audit log on, access log on, as a deployment runs).
Clients (tests/serve/load.py, aiohttp, one process) are spread round-robin over the replicas; no
balancer in front. Reported per setup: errors (anything but a complete answer), requests/s and streamed
chunks/s, p50/p99 latency and time to first byte, peak RSS per replica (VmHWM, and VmRSS sampled every
0.25 s to show whether it grows), CPU seconds per process group, the machine's load; then every complete
answer is checked in the audit log (exactly once) and ``bastion audit verify`` is run.

    .venv/bin/python bench/scale.py [--clients 500] [--duration 30] [--chunks 10] [--gap-ms 20]

Results: bench/results/scale.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import pg_server  # noqa: E402
from tests.conftest import postgres_target  # noqa: E402
from tests.serve.conftest import free_port, stop, wait_http  # noqa: E402
from tests.serve.load import Outcome, load  # noqa: E402
from tests.serve.replicas import Replicas, replicas  # noqa: E402
from tests.serve.sse_upstream import model_table  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (PostgreSQL's backends under the postmaster)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError):
                continue
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class RssSampler:
    """Samples VmRSS of ``pids`` every 0.25 s in a thread; ``series[pid]`` is [(t, kB)]."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.series: dict[int, list[tuple[float, int]]] = {p: [] for p in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for p in self.pids:
                self.series[p].append((time.monotonic(), status_kb(p, "VmRSS")))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def run_load(bases: list[str], headers: dict[str, str], clients: int, seconds: float) -> list[Outcome]:
    async def go() -> list[Outcome]:
        until = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, until.set)
        return await load(bases, headers, clients, until)

    return asyncio.run(go())


def summarise(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.complete]
    errors = Counter(o.error or f"status {o.status}" for o in outcomes if not o.complete)
    return {
        "requests": len(outcomes),
        "complete": len(ok),
        "errors": len(outcomes) - len(ok),
        "error_kinds": dict(errors.most_common(5)),
        "requests_per_s": round(len(ok) / seconds, 1),
        "chunks_per_s": round(sum(o.chunks for o in ok) / seconds, 1),
        "p50_ms": pct([o.total_s for o in ok], 0.50),
        "p99_ms": pct([o.total_s for o in ok], 0.99),
        "ttfb_p50_ms": pct([o.first_byte_s for o in ok if o.first_byte_s is not None], 0.50),
        "ttfb_p99_ms": pct([o.first_byte_s for o in ok if o.first_byte_s is not None], 0.99),
        "per_replica": dict(sorted(Counter(o.replica for o in ok).items())),
    }


def measure(
    name: str, bases: list[str], headers: dict[str, str], pids: dict[str, list[int]], args: argparse.Namespace,
) -> tuple[dict[str, Any], list[Outcome]]:
    """Warm up, then load ``bases`` for ``args.duration`` s; the summary and every outcome (warm-up too)."""
    warm = run_load(bases, headers, min(args.clients, 50), 2.0)
    replica_pids = pids.get("replicas", [])
    cpu0 = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()}
    busy0, total0 = machine_busy()
    load0 = os.getloadavg()[0]
    client0 = time.process_time()
    with RssSampler(replica_pids) as rss:
        t0 = time.monotonic()
        outcomes = run_load(bases, headers, args.clients, args.duration)
        elapsed = time.monotonic() - t0
    busy1, total1 = machine_busy()
    row = {"setup": name, "clients": args.clients, "seconds": round(elapsed, 1), **summarise(outcomes, elapsed)}
    row["cpu_s"] = {k: round(sum(cpu_s(p) for p in v) - cpu0[k], 1) for k, v in pids.items()}
    row["cpu_s"]["client"] = round(time.process_time() - client0, 1)
    row["machine_busy_pct"] = round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)
    row["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    row["rss_mb"] = []
    for p in replica_pids:
        series = [kb for _, kb in rss.series[p]]
        half = len(series) // 2
        row["rss_mb"].append({
            "peak": round(status_kb(p, "VmHWM") / 1024, 1),
            "max_first_half": round(max(series[:half] or [0]) / 1024, 1),
            "max_second_half": round(max(series[half:] or [0]) / 1024, 1),
            "end": round(series[-1] / 1024, 1) if series else None,
        })
    return row, warm + outcomes


def check_audit(running: Replicas, outcomes: list[Outcome]) -> dict[str, Any]:
    """Every complete answer in the log exactly once; nothing logged twice; ``audit verify``."""
    logged = Counter(running.audited())
    answered = [o.request_id for o in outcomes if o.complete]
    verify = running.bastion("audit", "verify", "--json", timeout=600)
    return {
        "answered": len(answered),
        "logged_requests": sum(logged.values()),
        "missing": sum(1 for rid in answered if rid not in logged),
        "doubled": sum(1 for n in logged.values() if n > 1),
        "verify_ok": verify.returncode == 0,
    }


def postmaster_pid(server: pg_server.Server) -> int:
    return int((server.root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--only", choices=["direct", "sqlite", "postgresql"], action="append")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 500 clients: ~3 descriptors per stream
    only = set(args.only or ["direct", "sqlite", "postgresql"])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bastion-scale-") as d:
        tmp = Path(d)
        port = free_port()
        log = (tmp / "upstream.log").open("wb")
        upstream = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "serve" / "sse_upstream.py"), str(port), str(args.chunks),
             str(args.gap_ms)], stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/v1"
        wait_http(url + "/models", upstream, tmp / "upstream.log", timeout=60)
        server = pg_server.start(durable=True) if "postgresql" in only else None
        try:
            if "direct" in only:
                # no gateway: the request names the upstream's model and goes to the upstream's /v1
                row, _ = measure("direct", [f"http://127.0.0.1:{port}"], {}, {"upstream": [upstream.pid]}, args)
                rows.append(row)
            for setup in ("sqlite", "postgresql"):
                if setup not in only:
                    continue
                count = 1 if setup == "sqlite" else args.replicas
                target = postgres_target(server, pool_size=10) if server is not None and setup != "sqlite" else None
                with replicas(tmp / setup, store=target, count=count, models=model_table(url), admit={}) as running:
                    pids = {"replicas": [p.pid for p in running.procs], "upstream": [upstream.pid]}
                    if server is not None and setup == "postgresql":
                        pids["postgresql"] = [postmaster_pid(server), *children(postmaster_pid(server))]
                    row, outcomes = measure(f"{setup} x{count}", running.bases, running.headers, pids, args)
                    row["audit"] = check_audit(running, outcomes)
                    rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if server is not None:
                server.stop()
            stop(upstream)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "shared machine (other sessions running); see loadavg_1m and machine_busy_pct"},
        "upstream": {"chunks": args.chunks, "gap_ms": args.gap_ms,
                     "floor_ms": round(args.chunks * args.gap_ms, 1)},
        "postgresql": {"fsync": True, "synchronous_commit": True, "pool_size_per_replica": 10},
        "client": "aiohttp, one process, clients round-robin over the replicas (no balancer)",
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'setup':<16}{'err':>6}{'req/s':>8}{'chunk/s':>9}{'p50':>8}{'p99':>8}{'ttfb50':>8}{'ttfb99':>8}"
          f"  peak RSS MB")
    for r in rows:
        print(f"{r['setup']:<16}{r['errors']:>6}{r['requests_per_s']:>8}{r['chunks_per_s']:>9}{r['p50_ms']:>8}"
              f"{r['p99_ms']:>8}{r['ttfb_p50_ms']:>8}{r['ttfb_p99_ms']:>8}  "
              f"{[m['peak'] for m in r['rss_mb']]}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
