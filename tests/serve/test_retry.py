"""Retries before the first byte: the policy's waits, then in the request flow (attempts audited)."""

from __future__ import annotations

import json
import random

import pytest

from bastion.errors import BackendUnavailable, BadGateway, UpstreamRateLimited, UpstreamTimedOut
from bastion.serve.breaker import Breaker
from bastion.serve.retry import RetryPolicy
from tests.serve.test_flow import CHAT, Flow, anyio_backend, flow, requests_in  # noqa: F401 - fixtures


def test_the_backoff_is_fully_jittered_and_capped() -> None:
    policy = RetryPolicy(retries=5, backoff_s=0.1, backoff_max_s=0.3)
    rng = random.Random(7)
    down = BackendUnavailable("unreachable")
    for retry, cap in enumerate([0.1, 0.2, 0.3, 0.3, 0.3]):
        waits = [policy.wait(down, retry, rng) for _ in range(200)]
        assert all(w is not None and 0.0 <= w <= cap for w in waits)
        assert max(w for w in waits if w is not None) > cap / 2  # spread over the range, not a constant
    assert policy.wait(down, 5, rng) is None  # retries spent


def test_only_transient_failures_and_short_retry_afters_are_retried() -> None:
    policy = RetryPolicy(retries=1, retry_after_max_s=1.0)
    rng = random.Random(1)
    assert policy.wait(UpstreamRateLimited("429", 0.5), 0, rng) == 0.5
    assert policy.wait(UpstreamRateLimited("429", 30.0), 0, rng) is None  # move on, the circuit opens
    assert policy.wait(BadGateway("not JSON"), 0, rng) is None  # the same broken answer again
    assert policy.wait(UpstreamTimedOut("timed out"), 0, rng) is None  # it spent its time budget
    assert RetryPolicy(retries=0).wait(BackendUnavailable("down"), 0, rng) is None


pytestmark = pytest.mark.anyio


async def test_a_deployment_that_fails_once_answers_on_the_retry(flow: Flow) -> None:  # noqa: F811
    cloud = flow.backends["cloud"]
    cloud.fail_next = 1
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "cloud", r.text
    assert cloud.attempts == 2 and flow.backends["smol"].attempts == 0
    entry = requests_in(flow)[-1]
    attempts = entry["attempts"]
    assert [(a["model"], a["outcome"]) for a in attempts] == [  # type: ignore[union-attr]
        ("cloud", "backend_unavailable"), ("cloud", "answered")]
    assert 0 <= attempts[1]["backoff_ms"] <= 100  # type: ignore[index]
    assert "skipped" not in entry  # it answered: nothing was passed over


async def test_a_stream_is_retried_before_its_first_byte(flow: Flow) -> None:  # noqa: F811
    cloud = flow.backends["cloud"]
    cloud.fail_next = 1
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", "stream": True, **CHAT})
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "cloud"
    assert "from the cloud" in "".join(
        json.loads(line[6:])["choices"][0]["delta"]["content"]
        for line in r.text.splitlines() if line.startswith("data: {")
    ).replace("  ", " ")
    assert r.text.rstrip().endswith("data: [DONE]")
    assert cloud.attempts == 2
    assert len(requests_in(flow)[-1]["attempts"]) == 2  # type: ignore[arg-type]


async def test_a_failure_that_opens_the_circuit_costs_no_retry(flow: Flow) -> None:  # noqa: F811
    cloud = flow.backends["cloud"]
    cloud.error = BackendUnavailable("connection refused")
    flow.gateway.breakers["cloud"] = Breaker(failures=1, cooldown_s=60)
    async with flow.client("analyst") as c:
        for _ in range(3):
            r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
            assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
    assert cloud.attempts == 1  # the one failure opened the circuit: no retry, and no attempt since
    first = [e for e in requests_in(flow) if e.get("attempts")][0]
    assert [(a["model"], a["outcome"]) for a in first["attempts"]] == [  # type: ignore[union-attr]
        ("cloud", "backend_unavailable"), ("smol", "answered")]


async def test_a_route_with_no_retries_fails_over_at_once(flow: Flow) -> None:  # noqa: F811
    flow.gateway.retries["cloud"] = RetryPolicy(retries=0)
    cloud = flow.backends["cloud"]
    cloud.fail_next = 1
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
    assert r.headers["x-bastion-model"] == "smol" and cloud.attempts == 1
