"""The reference nginx front balancing three real gateway replicas that share one store.

Three independent ``bastion serve`` processes (their own homes and pid files; one key store, registry
and audit log, as replicas on several hosts would share PostgreSQL) serve the bundled SmolLM2 behind
Debian's nginx running ``deploy/nginx-bastion.conf``. Requests through nginx are answered by every
replica, a replica killed with SIGKILL costs the clients nothing, and the one audit log holds every
answered request exactly once and verifies.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import free_port, stop, wait_http
from tests.serve.replicas import replicas

SNIPPET = Path(__file__).parents[2] / "deploy" / "nginx-bastion.conf"
ASK = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
       "temperature": 0}


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
    with replicas(tmp_path) as running, _nginx(tmp_path / "nginx", running.ports) as front:
        ids = []
        with httpx.Client(base_url=front, headers=running.headers, timeout=120) as client:
            for _ in range(12):
                reply = client.post("/v1/chat/completions", json=ASK)
                assert reply.status_code == 200, reply.text
                ids.append(reply.headers["x-request-id"])
            assert all(_answered_by(home) > 0 for home in running.homes), [_answered_by(h) for h in running.homes]
            assert client.post("/admin/reload").status_code == 403  # administration is not proxied
            running.procs[1].send_signal(signal.SIGKILL)
            running.procs[1].wait(timeout=30)
            for _ in range(12):  # nginx skips the dead replica: no client sees an error
                reply = client.post("/v1/chat/completions", json=ASK)
                assert reply.status_code == 200, reply.text
                ids.append(reply.headers["x-request-id"])
        assert sorted(running.audited()) == sorted(ids)  # each answered request exactly once, nothing else
        verify = running.bastion("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr


if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="nginx is not installed (the Makefile installs it)")
