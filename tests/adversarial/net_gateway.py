"""A real ``bastion serve`` process that starts in about a second: one upstream model, no local weights.

Used by the network and process attacks, which are about the HTTP server and the process, not about
inference. The upstream URL points at a closed port (the gateway starts; that model answers 503).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.serve.conftest import free_port, wait_http

CLI = [sys.executable, "-m", "bastion.cli.main"]


@dataclass
class Served:
    """A running gateway: its process, address, home and environment."""

    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    env: dict[str, str]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def setup_home(home: Path, port: int, server_extra: str = "", models: str = "") -> dict[str, str]:
    """Write a configuration under ``home``, initialise the audit log; return the environment to use."""
    config = home / "bastion.toml"
    models = models or f'[[models]]\nname = "up"\nbackend = "openai"\nurl = "http://127.0.0.1:{free_port()}/v1"\n'
    config.write_text(
        f'[server]\nport = {port}\n{server_extra}\n[store]\npath = "{home}/bastion.db"\n'
        f'[audit]\nsigning_key = "{home}-keys/audit.key"\nbody_key = "{home}-keys/body.key"\n{models}'
    )
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_CONFIG": str(config), "HF_HUB_OFFLINE": "1"}
    if not (home / "audit" / "audit.db").exists():
        subprocess.run([*CLI, "audit", "init"], env=env, check=True, capture_output=True, timeout=60)
    return env


def start(home: Path, server_extra: str = "", port: int | None = None) -> Served:
    """Start a gateway on ``home`` and wait until it answers /healthz."""
    port = port or free_port()
    env = setup_home(home, port, server_extra)
    log = home / f"serve-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=fh, stderr=fh)
    # the only model's upstream is down, so /healthz says 503: any answer means the gateway is up
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=60, any_status=True)
    return Served(proc, port, home, env, log)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
