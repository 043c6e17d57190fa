"""Periodic health checks of an upstream feed its circuit breaker: refusals count, slow answers do not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bastion.config import Settings
from bastion.keys import KeyStore
from bastion.policy import AccessPolicy, CedarAuthorizer
from bastion.serve.backends.upstream import UpstreamBackend
from bastion.serve.gateway import Gateway
from bastion.serve.router import Router
from tests.serve.conftest import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_refused_health_checks_open_the_circuit_and_slow_ones_do_not(tmp_path: Path) -> None:
    # "silent" accepts connections and never answers (a busy upstream); "gone" refuses them.
    silent = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    common = {"backend": "openai", "health_interval_s": 0.05, "health_timeout_s": 0.05, "breaker_failures": 2}
    settings = Settings.model_validate({"audit": {"enabled": False}, "models": [
        {"name": "gone", "url": f"http://127.0.0.1:{free_port()}/v1", **common},
        {"name": "silent", "url": f"http://127.0.0.1:{port}/v1", **common}]})
    backends = {m.name: UpstreamBackend(m) for m in settings.models}
    gateway = Gateway(settings, KeyStore(tmp_path / "keys.db"), Router.from_settings(backends, settings.models),
                      CedarAuthorizer(AccessPolicy("permissive", {})))
    await gateway.start()
    try:
        for _ in range(100):
            if gateway.breakers["gone"].state == "open":
                break
            await asyncio.sleep(0.05)
        assert gateway.breakers["gone"].state == "open"
        assert not backends["silent"].healthy()  # timed out: unhealthy (routed last) ...
        assert gateway.breakers["silent"].state == "closed"  # ... but not counted as a failure
    finally:
        await gateway.stop()
        silent.close()
