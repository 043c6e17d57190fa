"""A drill against a real gateway whose upstream is a real llama.cpp server: taken away, then killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bastion import bundled
from bastion.drill import Drill, DrillOptions
from bastion.keys import KeyStore
from tests.serve.conftest import free_port, serving, stop, wait_http


def test_drill_shifts_to_the_local_model_with_no_client_errors(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "upstream.log"
    with log.open("wb") as fh:
        upstream = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled.smollm2()), "--model_alias", "up",
             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "512"],
            stdout=fh, stderr=fh)
    home = tmp_path / "home"
    home.mkdir()
    store = KeyStore(home / "bastion.db")
    key = store.create("drill", ["*"]).key
    store.close()
    config = f"""
[[models]]
name = "up"
backend = "openai"
url = "http://127.0.0.1:{port}/v1"
fallbacks = ["smol"]
breaker_failures = 1
breaker_cooldown_s = 300

[[models]]
name = "smol"
path = "bundled:smollm2"
n_threads = 1
"""
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", upstream, log)
        with serving(home, config, {"smol": "bundled:smollm2"}) as base:
            # 1. Taken away through the gateway's admin endpoint, by the CLI.
            env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys"}
            run = subprocess.run(
                [sys.executable, "-m", "bastion.cli.main", "drill", "--gateway", base, "--key", key,
                 "--requests", "8", "--concurrency", "2", "--html", str(tmp_path / "drill.html"), "--json",
                 "--config", str(home / "bastion.toml")],
                capture_output=True, text=True, env=env, timeout=600, check=False)
            assert run.returncode == 0, run.stdout + run.stderr
            doc = json.loads(run.stdout)
            (target,) = doc["targets"]
            assert target["model"] == "up" and target["client_errors"] == 0
            before, during, after = target["phases"]
            assert before["answered_by"] == {"up": 4} and during["answered_by"] == {"smol": 8}
            assert after["answered_by"] == {"up": 4}
            assert "no client-visible errors" in (tmp_path / "drill.html").read_text()
            audit = subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "search", "--json",
                                    "--config", str(home / "bastion.toml")],
                                   capture_output=True, text=True, env=env, timeout=120, check=True)
            assert '"drill.report"' in audit.stdout

            # 2. The upstream process is killed while traffic flows.
            drill = Drill(base, key)
            try:
                killed = DrillOptions(requests=12, concurrency=2, take_away=False,
                                      on_failover=lambda: os.kill(upstream.pid, signal.SIGKILL))
                report = drill.run("up", killed).to_json()
            finally:
                drill.close()
            assert report["client_errors"] == 0, report
            assert report["time_to_shift_s"] is not None
            assert report["phases"][2]["answered_by"] == {"smol": 6}  # it stays dead; smol carries on
    finally:
        stop(upstream)
