"""Reaching the model around the gateway through xllamacpp's own HTTP listener.

xllamacpp's ``Server`` always starts llama.cpp's HTTP server too. With its defaults it listens on
127.0.0.1 on a random TCP port with no key and CORS open to every origin: any local process, or a web
page in a browser on the host, could ask the model with no authentication, no Cedar decision, no
quota and no audit entry (found while adopting xllamacpp; it would have shipped with the engine). The
backend now makes it a Unix socket in a private folder that demands a random key.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx
import pytest

from bastion.config import ModelSettings
from bastion.serve.backends.xllama import XllamaBackend


def tcp_listeners_of_this_process() -> list[str]:
    """Local addresses of TCP sockets in LISTEN state that this process holds open."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                found.append(fields[1])
    return found


@pytest.mark.slow
def test_the_engines_own_http_listener_is_a_private_unix_socket_that_demands_a_key() -> None:
    async def probe() -> tuple[str | None, list[str], list[int]]:
        backend = XllamaBackend(
            ModelSettings(name="smol", path="bundled:smollm2", n_ctx=256, n_threads=1, parallel=1)
        )
        await backend.start()
        try:
            before = tcp_listeners_of_this_process()
            address = backend.listening_address
            assert address is not None and address.startswith("unix://"), address
            sock = Path(address.removeprefix("unix://"))
            folder = sock.parent
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # nobody else may even reach the socket
            assert folder.stat().st_uid == os.getuid()
            transport = httpx.AsyncHTTPTransport(uds=str(sock))
            async with httpx.AsyncClient(transport=transport, base_url="http://engine", timeout=60) as client:
                statuses = [
                    (await client.post("/v1/completions", json={"prompt": "The capital of France is",
                                                                 "max_tokens": 4})).status_code,
                    (await client.post("/v1/chat/completions",
                                       json={"messages": [{"role": "user", "content": "hi"}]})).status_code,
                    (await client.get("/slots")).status_code,
                    (await client.get("/")).status_code,  # the web UI
                ]
            return address, before, statuses
        finally:
            await backend.aclose()

    address, listeners, statuses = asyncio.run(probe())
    assert listeners == []  # no TCP port: a browser or another user has nothing to connect to
    assert statuses[0] == 401 and statuses[1] == 401, statuses  # no key, no answer
    assert statuses[2] in (401, 404, 501), statuses
    assert statuses[3] in (401, 404), statuses
    assert address is not None
    assert not Path(address.removeprefix("unix://")).parent.exists()  # removed on close
