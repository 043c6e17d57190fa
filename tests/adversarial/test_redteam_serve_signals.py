"""Red-team: a policy reload (SIGHUP) while the gateway starts must not stop the service.

This once worked: the pid file that ``bastion policy reload`` (and ``systemctl reload``) reads is
written first, but the gateway took SIGHUP over only once its models were loaded; in between SIGHUP had
its default action, which ends the process. A reload during a start-up or restart killed a single
gateway, and with ``--workers N`` it killed each starting worker until the parent, seeing workers die
right after start three times, stopped the whole service. A reload asked for while starting is now
applied once the gateway runs (it may have read the policy before the signal came).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import admit_all, free_port, stop


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=0.3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_reloads_while_the_gateway_starts_do_not_stop_it(tmp_path: Path, workers: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(
        f'[server]\nport = {port}\nworkers = {workers}\n\n[store]\npath = "{home / "bastion.db"}"\n\n'
        '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 1\n',
        encoding="utf-8",
    )
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys", "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "bastion.cli.main"]
    subprocess.run([*cli, "audit", "init", "--config", str(config)], env=env, check=True, capture_output=True)
    old = os.environ.get("BASTION_KEY_HOME")
    os.environ["BASTION_KEY_HOME"] = env["BASTION_KEY_HOME"]
    try:
        admit_all(home, {"smollm2": "bundled:smollm2"})
    finally:
        if old is None:
            os.environ.pop("BASTION_KEY_HOME", None)
        else:
            os.environ["BASTION_KEY_HOME"] = old
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([*cli, "serve", "--config", str(config)], stdout=fh, stderr=fh, env=env)
    base, pid_file, sent = f"http://127.0.0.1:{port}", home / "serve.pid", 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if pid_file.is_file() and pid_file.read_text().strip():
                # what 'bastion policy reload' sends to the pid it finds there
                os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
                sent += 1
            if _up(base):
                break
            time.sleep(0.05)
        assert sent > 0, log.read_text()[-2000:]
        assert proc.poll() is None, f"the gateway stopped (exit {proc.returncode}):\n{log.read_text()[-2000:]}"
        assert _up(base), log.read_text()[-2000:]
        for _ in range(20):  # and a storm once it runs
            os.kill(proc.pid, signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None and _up(base), log.read_text()[-2000:]
        assert "killed by signal" not in log.read_text()
    finally:
        stop(proc)
