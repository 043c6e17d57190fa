"""A route's every candidate, in every tier, is authorised by Cedar for the caller before it may answer.

The attack: a pool whose first tier mixes a public deployment with a secret one (drawn first most of
the time, by weight) must never let an uncleared key reach the secret one, whether the pool is healthy,
its public member is down, or the request streams.
"""

from __future__ import annotations

import pytest

from tests.serve.test_flow import CHAT, Flow, anyio_backend, requests_in  # noqa: F401 - fixtures
from tests.serve.test_route import pool  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_an_uncleared_key_never_reaches_the_secret_member_of_a_pool(pool: Flow) -> None:  # noqa: F811
    async with pool.client("user") as c:
        for stream in [False, True] * 10:
            r = await c.post("/v1/chat/completions", json={"model": "mixed", "stream": stream, **CHAT})
            assert r.status_code == 200 and r.headers["x-bastion-model"] == "mixed"
    assert pool.backends["vault"].attempts == 0
    refused = [e for e in requests_in(pool) if e.get("skipped")]
    assert refused, "vault (weight 50 against 1) was never drawn first: the test proves nothing"
    assert all({"model": "vault", "reason": "model_not_allowed"} in e["skipped"] for e in refused)  # type: ignore[operator]


async def test_when_the_public_member_is_down_the_next_tier_answers_not_the_secret_member(pool: Flow) -> None:  # noqa: F811
    pool.backends["mixed"].up = False
    async with pool.client("user") as c:
        for stream in (False, True):
            r = await c.post("/v1/chat/completions", json={"model": "mixed", "stream": stream, **CHAT})
            assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
    assert pool.backends["vault"].attempts == 0
    pool.backends["smol"].up = False
    async with pool.client("user") as c:
        r = await c.post("/v1/chat/completions", json={"model": "mixed", **CHAT})
    assert r.status_code == 503 and "vault (model_not_allowed)" in r.json()["error"]["message"]
    assert pool.backends["vault"].attempts == 0


async def test_a_cleared_key_is_served_by_the_secret_member(pool: Flow) -> None:  # noqa: F811
    # The same route for an analyst cleared to secret: vault does answer, so the refusals above are Cedar's.
    async with pool.client("analyst") as c:
        answered = {(await c.post("/v1/chat/completions", json={"model": "mixed", **CHAT})).headers[
            "x-bastion-model"] for _ in range(10)}
    assert "vault" in answered
