"""A real gateway process serving one admitted copy of SmolLM2 as "smol", for the integrity attacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bastion import bundled
from bastion.keys import KeyStore
from tests.serve.conftest import admit_all, free_port, wait_http


def environment(home: Path) -> dict[str, str]:
    """``home`` as BASTION_HOME, with the operator's keys outside it (as in production), offline."""
    keys = home.parent / f"{home.name}-keys"
    return {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": str(keys), "HF_HUB_OFFLINE": "1"}


def bastion(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against ``home``'s configuration."""
    env = environment(home)
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args, "--config", str(home / "bastion.toml")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def prepare(home: Path, engine: str = "llama-cpp-python") -> tuple[Path, int, str]:
    """Copy SmolLM2 to ``home/smol.gguf``, admit it, configure a gateway (audit on): (model, port, key).

    ``engine`` is the embedded engine that serves it (both must load only the sealed copy).
    """
    model = home / "smol.gguf"
    model.write_bytes(bundled.smollm2().read_bytes())
    admit_all(home, {"smol": str(model)})
    port = free_port()
    (home / "bastion.toml").write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n'
        f'[registry]\npublic_key = "{home}/org/signing-key.pub.pem"\n'
        f'[[models]]\nname = "smol"\npath = "{model}"\nn_threads = 1\nn_ctx = 256\nengine = "{engine}"\n'
    )
    done = bastion(home, "audit", "init")
    assert done.returncode == 0, done.stderr
    return model, port, KeyStore(home / "bastion.db").create("ops", ["*"]).key


def start_gateway(home: Path, port: int, ready: str = "/healthz") -> subprocess.Popen[bytes]:
    """``bastion serve`` on ``home``'s configuration, once ``ready`` answers 200."""
    env = environment(home)
    log = home / "serve.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(home / "bastion.toml")],
            env=env, stdout=fh, stderr=fh,
        )
    wait_http(f"http://127.0.0.1:{port}{ready}", proc, log)
    return proc
