"""The reference nginx front balancing three real gateway replicas that share one store.

Three independent ``bastion serve`` processes (their own homes and pid files; one key store, registry
and audit log, as replicas on several hosts would share PostgreSQL) serve the bundled SmolLM2 behind
Debian's nginx running ``deploy/nginx-bastion.conf``. Requests through nginx are answered by every
replica, a replica killed with SIGKILL costs the clients nothing, and the one audit log holds every
answered request exactly once and verifies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import admit_all, free_port, stop, wait_http

SNIPPET = Path(__file__).parents[2] / "deploy" / "nginx-bastion.conf"
ASK = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
       "temperature": 0}


def _config(shared: Path, port: int) -> str:
    return f"""
[server]
port = {port}
access_log = true
admin_loopback = false

[store]
path = "{shared / "bastion.db"}"

[audit]
path = "{shared / "audit" / "audit.db"}"

[registry]
public_key = "{shared / "org" / "signing-key.pub.pem"}"

[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
"""


def _env(home: Path, shared: Path) -> dict[str, str]:
    return {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{shared}-keys", "HF_HUB_OFFLINE": "1"}


@contextlib.contextmanager
def _nginx(tmp: Path, ports: list[int]) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx (Debian package nginx-light or nginx) is needed"
    front = free_port()
    snippet = SNIPPET.read_text(encoding="utf-8").replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{front};")
    for default, port in zip((8081, 8082, 8083), ports, strict=True):
        snippet = snippet.replace(f"127.0.0.1:{default} ", f"127.0.0.1:{port} ")
    tmp.mkdir()
    (tmp / "bastion.conf").write_text(snippet, encoding="utf-8")
    for d in ("logs", "tmp"):
        (tmp / d).mkdir()
    (tmp / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/tmp/body;
    proxy_temp_path {tmp}/tmp/proxy;
    fastcgi_temp_path {tmp}/tmp/fastcgi;
    uwsgi_temp_path {tmp}/tmp/uwsgi;
    scgi_temp_path {tmp}/tmp/scgi;
    include {tmp}/bastion.conf;
}}
""",
        encoding="utf-8",
    )
    os.chmod(tmp, 0o755)  # nginx's workers run as an unprivileged user
    log = tmp / "logs" / "nginx.out"
    with log.open("wb") as fh:
        proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], stdout=fh, stderr=fh)
    base = f"http://127.0.0.1:{front}"
    try:
        wait_http(base + "/healthz", proc, log, timeout=60)
        yield base
    finally:
        stop(proc)


def _answered_by(home: Path) -> int:
    log = (home / "serve.log").read_text(encoding="utf-8", errors="replace")
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', log))


def test_nginx_balances_three_replicas_and_survives_one_killed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    store = KeyStore(shared / "bastion.db")
    key = store.create("alice", ["*"]).key
    store.close()
    admit_all(shared, {"smollm2": "bundled:smollm2"})
    homes, ports, procs = [tmp_path / f"replica{i}" for i in range(3)], [free_port() for _ in range(3)], []
    for i, (home, port) in enumerate(zip(homes, ports, strict=True)):
        home.mkdir()
        (home / "bastion.toml").write_text(_config(shared, port), encoding="utf-8")
        if i == 0:
            subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--config",
                            str(home / "bastion.toml")], env=_env(home, shared), check=True, capture_output=True)
    try:
        for home in homes:
            with (home / "serve.log").open("wb") as fh:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(home / "bastion.toml")],
                    stdout=fh, stderr=fh, env=_env(home, shared)))
        for home, port, proc in zip(homes, ports, procs, strict=True):
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, home / "serve.log")
        with _nginx(tmp_path / "nginx", ports) as front:
            headers = {"Authorization": f"Bearer {key}"}
            ids = []
            with httpx.Client(base_url=front, headers=headers, timeout=120) as client:
                for _ in range(12):
                    reply = client.post("/v1/chat/completions", json=ASK)
                    assert reply.status_code == 200, reply.text
                    ids.append(reply.headers["x-request-id"])
                assert all(_answered_by(home) > 0 for home in homes), [_answered_by(h) for h in homes]
                assert client.post("/admin/reload").status_code == 403  # administration is not proxied
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait(timeout=30)
                for _ in range(12):  # nginx skips the dead replica: no client sees an error
                    reply = client.post("/v1/chat/completions", json=ASK)
                    assert reply.status_code == 200, reply.text
                    ids.append(reply.headers["x-request-id"])
        env = _env(homes[0], shared)
        cli = [sys.executable, "-m", "bastion.cli.main"]
        config = ["--config", str(homes[0] / "bastion.toml")]
        found = subprocess.run([*cli, "audit", "search", "--kind", "request", "--limit", "1000", "--json", *config],
                               env=env, capture_output=True, text=True, check=True, timeout=120)
        doc = json.loads(found.stdout)
        audited = [str(e["request_id"]) for e in (doc["entries"] if isinstance(doc, dict) else doc)]
        assert sorted(audited) == sorted(ids)  # each answered request exactly once, nothing else
        verify = subprocess.run([*cli, "audit", "verify", *config], env=env, capture_output=True, text=True,
                                timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)


if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="nginx is not installed (the Makefile installs it)")
