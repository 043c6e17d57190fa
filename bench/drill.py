"""The drill's failover numbers: a real upstream taken away, then killed, under traffic.

One `python -m llama_cpp.server` upstream (SmolLM2) in front of the gateway's local SmolLM2 fallback.
Two drills through `bastion.drill`, as `bastion drill` runs them:

1. *taken away*: the gateway's admin endpoint takes the upstream out of the route (a withdrawal-like,
   polite removal), traffic flows, it is given back;
2. *killed*: SIGKILL of the upstream process once traffic flows (the circuit opens on the first
   refused connection), and it stays dead.

Reported per drill: client-visible errors (goal 0), time to shift (first request answered by the
fallback after the take-away), p50/p99 before and during failover and the difference. No peer runs
here: the fault-suite bench (`bench/fault_suite.py`) compares failover behaviour with LiteLLM.

    .venv/bin/python bench/drill.py [--requests 24] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bastion import bundled
from bastion.drill import Drill, DrillOptions
from bastion.keys import KeyStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import free_port, wait_ready  # noqa: E402  (one copy of the bench's process helpers)


def start_upstream(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (home / "upstream.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled.smollm2()), "--model_alias", "up",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "512",
         "--interrupt_requests", "False"],
        stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{port}/v1"
    wait_ready(url + "/models", proc, timeout=300)
    return proc, url


def start_gateway(home: Path, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n'
        "[registry]\nenforce = false\n[audit]\nenabled = false\n"  # failover is measured, not admission
        f'[[models]]\nname = "up"\nbackend = "openai"\nurl = "{upstream}"\nfallbacks = ["smol"]\n'
        "breaker_failures = 1\nbreaker_cooldown_s = 300\n"
        '[[models]]\nname = "smol"\npath = "bundled:smollm2"\nn_threads = 1\n',
        encoding="utf-8",
    )
    log = (home / "serve.log").open("wb")
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(config)],
                            stdout=log, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/healthz", proc, timeout=300)
    return proc, base


def summary(name: str, report: dict[str, Any]) -> dict[str, Any]:
    before, during = report["phases"][0], report["phases"][1]
    return {
        "drill": name,
        "client_errors": report["client_errors"],
        "time_to_shift_s": report["time_to_shift_s"],
        "p50_ms_before": before["p50_ms"],
        "p99_ms_before": before.get("p99_ms"),
        "p50_ms_during": during["p50_ms"],
        "p99_ms_during": during.get("p99_ms"),
        "added_p50_ms": report["added_p50_ms_during_failover"],
        "answered_by_during": during["answered_by"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bastion-drill-") as tmp:
        home = Path(tmp)
        store = KeyStore(home / "bastion.db")
        key = store.create("drill", ["*"]).key
        store.close()
        upstream, url = start_upstream(home)
        gateway, base = start_gateway(home, url)
        try:
            drill = Drill(base, key)
            try:
                polite = DrillOptions(args.requests, args.concurrency)
                results.append(summary("taken away (admin endpoint)", drill.run("up", polite).to_json()))
                killed = DrillOptions(args.requests, args.concurrency, take_away=False,
                                      on_failover=lambda: os.kill(upstream.pid, signal.SIGKILL))
                results.append(summary("killed (SIGKILL of the upstream)", drill.run("up", killed).to_json()))
            finally:
                drill.close()
        finally:
            for proc in (gateway, upstream):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
    load = os.getloadavg()[0]
    print(json.dumps({"load_1min": round(load, 1), "results": results}, indent=2))
    print("\n| drill | client errors | time to shift | p50 before / during | p99 before / during |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['drill']} | {r['client_errors']} | {r['time_to_shift_s']} s | {r['p50_ms_before']} /"
              f" {r['p50_ms_during']} ms | {r['p99_ms_before']} / {r['p99_ms_during']} ms |")


if __name__ == "__main__":
    main()
