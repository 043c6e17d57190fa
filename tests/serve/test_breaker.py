"""Circuit breakers: the state machine with a test clock, then in the request flow."""

from __future__ import annotations

import asyncio

import pytest

from bastion.errors import BackendUnavailable
from bastion.serve.breaker import Breaker
from tests.serve.test_flow import CHAT, Flow, anyio_backend, flow, requests_in  # noqa: F401 - fixtures


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_once_per_cooldown() -> None:
    clock = Clock()
    b = Breaker(failures=3, cooldown_s=10, clock=clock)
    b.failure()
    b.success()  # a success in between resets the count
    b.failure()
    b.failure()
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.now = 10
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # one probe per window
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.now = 20
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_a_probe_that_proves_nothing_lets_the_next_request_probe() -> None:
    clock = Clock()
    b = Breaker(failures=1, cooldown_s=1, clock=clock)
    b.failure()
    clock.now = 1
    assert b.allow()
    b.release()
    assert b.allow() and b.state == "half_open"


@pytest.mark.anyio
async def test_a_dead_primary_costs_only_the_attempts_that_open_its_circuit(flow: Flow) -> None:  # noqa: F811
    # cloud looks healthy (its health check has not noticed) but every request to it fails.
    cloud = flow.backends["cloud"]
    cloud.error = BackendUnavailable("connection refused")
    flow.gateway.breakers["cloud"] = Breaker(failures=2, cooldown_s=0.2)
    async with flow.client("analyst") as c:
        for _ in range(6):
            r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
            assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
        assert cloud.attempts == 2  # then the circuit opened: 4 requests went straight to smol
        assert requests_in(flow)[-1]["skipped"] == [{"model": "cloud", "reason": "circuit_open"}]
    async with flow.client("admin") as c:
        assert 'bastion_breaker_state{model="cloud"} 2.0' in (await c.get("/metrics")).text
    await asyncio.sleep(0.25)  # the cooldown passes; cloud is back
    cloud.error = None
    async with flow.client("admin") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
        assert r.headers["x-bastion-model"] == "cloud" and cloud.attempts == 3  # the probe, and it closed
        assert 'bastion_breaker_state{model="cloud"} 0.0' in (await c.get("/metrics")).text
