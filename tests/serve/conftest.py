"""A real gateway process on 127.0.0.1 serving the real bundled models, plus a real upstream.

The upstream is llama-cpp-python's own OpenAI server running SmolLM2; one upstream points at a closed
port to exercise 503 and fallback routing. Started once per session: model loading takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from bastion import bundled
from bastion.keys import KeyStore
from bastion.store import Target
from tests.conftest import store_toml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0, any_status: bool = False
) -> None:
    """Wait until ``url`` answers 200 (or, with ``any_status``, answers at all)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status: int | None = httpx.get(url, timeout=2).status_code
        except httpx.HTTPError:
            status = None
        if status == 200 or (any_status and status is not None):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def admit_all(
    home: Path, models: dict[str, str], policy: str = "permissive", store: Target | None = None
) -> Path:
    """Admit ``models`` (name -> path) into the registry under ``home`` (or ``store``), signed by a new
    org key."""
    from bastion.audit import AdminAudit
    from bastion.config import AuditSettings
    from bastion.policy import Organisation
    from bastion.registry import Registry, admit
    from bastion.signing import generate_key_pair

    pair = generate_key_pair(home / "org")
    registry = Registry(store or home / "bastion.db")
    # the gateway under test keeps its own log; these admissions are set-up, not what is tested
    audit = AuditSettings(enabled=False)
    old = os.environ.get("BASTION_HOME")
    os.environ["BASTION_HOME"] = str(home)  # bundled:gemma3 is assembled under the gateway's home
    try:
        for name, ref in models.items():
            admit(registry, bundled.resolve(ref), name, policy, pair.private_key,
                  Organisation(("CN",), (pair.key_hint,)), "test", audit=AdminAudit(audit))
    finally:
        if old is None:
            os.environ.pop("BASTION_HOME", None)
        else:
            os.environ["BASTION_HOME"] = old
    registry.close()
    return pair.private_key


@contextlib.contextmanager
def serving(
    home: Path,
    config_body: str,
    admit: dict[str, str] | None = None,
    server: str = "",
    launcher: list[str] | None = None,
    store: Target | None = None,
) -> Iterator[str]:
    """Run ``bastion serve`` on a free port with ``config_body`` (plus [server] port and [store]).

    ``server`` holds extra lines for the [server] table; ``launcher`` replaces the Python interpreter
    that runs ``-m bastion.cli.main serve`` (a wrapper that sandboxes it first); ``store`` is where the
    gateway keeps its data (default: ``home/bastion.db``; a PostgreSQL target puts keys, registry and
    audit log there).
    The home gets an initialised audit log and, signed by a new organisation key, the ``admit``
    models (name -> path). Yields the base URL; stops the gateway on exit.
    """
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(f"[server]\nport = {port}\n{server}\n\n{store_toml(store or home / 'bastion.db')}\n{config_body}",
                      encoding="utf-8")
    # operator keys beside the home, not in it (and the same for every command run on this gateway)
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--config", str(config)],
                   env=env, check=True, capture_output=True)
    admit_all(home, admit or {}, store=store)
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([*(launcher or [sys.executable]), "-m", "bastion.cli.main", "serve", "--config",
                                 str(config)],
                                stdout=fh, stderr=fh, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc, log)
        yield base
    finally:
        stop(proc)


#: a gateway for retrieval tests: SmolLM2, and groups cleared to official (staff) and secret (intel)
RETRIEVAL_CONFIG = """
[policy]
clearance = { staff = "official", intel = "secret" }

[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
classification = "{ceiling}"

[[models]]
name = "gemma3"                # for secret work: only keys cleared to secret may call it (other bytes:
path = "bundled:gemma3"        # a model's ceiling is the highest its bytes are served at, under any name)
chat_format = "gemma"
n_threads = 1
classification = "secret"

[[models]]
name = "cloud"
backend = "openai"
url = "http://127.0.0.1:9/v1"
fallbacks = ["smollm2"]
"""


@contextlib.contextmanager
def officer_and_analyst(home: Path, ceiling: str = "official") -> Iterator[tuple[str, OpenAI, OpenAI]]:
    """A retrieval gateway and two SDK clients: an officer (groups staff and intel, cleared to secret)
    and an analyst (staff, official); ``smollm2`` may hold data up to ``ceiling``, ``gemma3`` up to
    secret. Only keys are
    administrators here (as behind a proxy): loopback callers are by default."""
    store = KeyStore(home / "bastion.db")
    officer_key = store.create("officer", ["smollm2", "gemma3"], groups=["staff", "intel"]).key
    analyst_key = store.create("analyst", ["smollm2"], groups=["staff"]).key
    store.close()
    with serving(home, RETRIEVAL_CONFIG.replace("{ceiling}", ceiling), admit={"smollm2": "bundled:smollm2", "gemma3": "bundled:gemma3"},
                 server="admin_loopback = false") as base:
        officer = OpenAI(base_url=base + "/v1", api_key=officer_key, max_retries=0, timeout=120)
        analyst = OpenAI(base_url=base + "/v1", api_key=analyst_key, max_retries=0, timeout=120)
        yield base, officer, analyst


@dataclass(frozen=True)
class Gateway:
    base: str
    home: Path
    config: Path
    admin_key: str
    smol_only_key: str
    revoked_key: str
    proc: subprocess.Popen[bytes]

    @property
    def v1(self) -> str:
        return self.base + "/v1"


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, as a real upstream process."""
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(bundled.smollm2()),
                "--model_alias",
                "smol-up",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "1",
                "--n_ctx",
                "1024",
            ],
            stdout=fh,
            stderr=fh,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: str) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("gateway-home")
    keys = tmp_path_factory.mktemp("gateway-keys")  # operator keys live outside BASTION_HOME
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(
        f"""
[server]
port = {port}
max_body_bytes = 65536

[store]
path = "{home / "bastion.db"}"

[audit]
signing_key = "{keys / "audit-signing.key"}"
body_key = "{keys / "audit-body.key"}"

[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1

[[models]]
name = "gemma3"
path = "bundled:gemma3"
chat_format = "gemma"
n_threads = 1

[[models]]
name = "minilm"
backend = "minilm"
path = "bundled:minilm"

[[models]]
name = "smollm2-q0"
path = "bundled:smollm2"
n_ctx = 512
n_threads = 1
max_queue = 0

[[models]]
name = "upstream"
backend = "openai"
url = "{upstream}"
upstream_model = "smol-up"
timeout_s = 60

[[models]]
name = "dead"
backend = "openai"
url = "{dead}"

[[models]]
name = "dead-with-fallback"
backend = "openai"
url = "{dead}"
fallbacks = ["smollm2"]
""",
        encoding="utf-8",
    )
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--config", str(config)],
                   env=env, check=True, capture_output=True)
    admit_all(home, {"smollm2": "bundled:smollm2", "gemma3": "bundled:gemma3", "minilm": "bundled:minilm",
                     "smollm2-q0": "bundled:smollm2"})
    store = KeyStore(home / "bastion.db")
    admin = store.create("admin", ["*"]).key
    smol_only = store.create("analyst", ["smollm2"]).key
    revoked = store.create("leaver", ["*"])
    store.revoke(revoked.record.id)
    store.close()
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(config)],
            stdout=fh,
            stderr=fh,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc, log)
        yield Gateway(base, home, config, admin, smol_only, revoked.key, proc)
    finally:
        stop(proc)
