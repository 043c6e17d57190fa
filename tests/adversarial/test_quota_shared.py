"""Red team, scale-out: attacks on quotas shared by several gateway processes through one store.

Each test names what broke (or would have) and the fix. The quotas are real (``Quotas`` over the real
usage store, SQLite file or PostgreSQL); only the clocks are moved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bastion.config import QuotaSettings
from bastion.quota import QuotaExceeded, UsageStore
from bastion.quota.quotas import Quotas
from bastion.store import PostgresTarget, Target
from tests import pg_server
from tests.conftest import postgres_target, raw_sql

ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}  # prompt bound 2 + 2 x 16 = 34


def _quotas(target: Target, clock: Callable[[], float] = time.time, synchronise: bool = True,
            **limits: object) -> Quotas:
    settings = QuotaSettings.model_validate({"enabled": True, **limits})
    return Quotas(settings, UsageStore(target), clock=clock, synchronise=synchronise)


def test_a_replica_whose_clock_runs_behind_cannot_spend_the_minute_again(postgres: pg_server.Server) -> None:
    # Broke (first cut of shared windows): buckets are stamped with the replica's own clock. A replica
    # five minutes behind wrote its requests into buckets the others had already left behind, and they
    # admitted the whole minute's limit again. Fix: every replica reads PostgreSQL's clock at each lease
    # renewal and stamps buckets and leases with it.
    target: PostgresTarget = postgres_target(postgres)
    fast = _quotas(target, key={"rpm": 5})
    slow = _quotas(target, clock=lambda: time.time() - 300, key={"rpm": 5})

    async def attempt(quotas: Quotas) -> bool:
        try:
            await quotas.reserve("k1", (), dict(ASK), 1)
        except QuotaExceeded:
            return False
        return True

    async def race() -> list[bool]:
        return [await attempt(slow) for _ in range(5)] + [await attempt(fast) for _ in range(5)]

    admitted = asyncio.run(race())
    assert admitted == [True] * 5 + [False] * 5
    for q in (fast, slow):
        q.close()


def test_a_huge_request_is_refused_and_holds_nothing(store_target: Target) -> None:
    # The largest max_tokens the API accepts (131072) and a prompt near the body limit: refused by the
    # budget at once, for the period, and nothing of it is held, in any scope, by any process.
    quotas = _quotas(store_target, key={"budget_tokens": 1000, "tpm": 5_000_000},
                     organisation={"budget_tokens": 10_000})
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 900_000}]}

    async def run() -> None:
        with pytest.raises(QuotaExceeded, match="budget") as over:
            await quotas.reserve("k1", (), body, 131_072)
        assert over.value.retry_after_s >= 1  # until the next period, not "now"
        assert raw_sql(store_target, "SELECT count(*) FROM quota_hold") == [(0,)]
        assert raw_sql(store_target, "SELECT count(*) FROM quota_window") == [(0,)]
        held = await quotas.reserve("k1", (), dict(ASK), 16)  # a normal request still goes through
        assert held.reservation.tokens == 50

    asyncio.run(run())
    quotas.close()


def test_a_flood_of_refused_requests_does_not_lock_the_key_out_longer(store_target: Target) -> None:
    # A refused request writes nothing: a key holder (or a client retrying in a loop without waiting)
    # hammering past the limit neither uses more of it nor pushes the window's end further away.
    now = [1_790_000_000.0]
    quotas = _quotas(store_target, clock=lambda: now[0], synchronise=False, key={"rpm": 3})  # moved by hand

    async def run() -> None:
        for _ in range(3):
            await quotas.reserve("k1", (), dict(ASK), 1)
        for _ in range(200):
            now[0] += 0.1
            with pytest.raises(QuotaExceeded):
                await quotas.reserve("k1", (), dict(ASK), 1)
        assert raw_sql(store_target, "SELECT sum(requests) FROM quota_window") == [(3,)]
        now[0] = 1_790_000_000.0 + 60.0  # the first three left the window: room again, at once
        await quotas.reserve("k1", (), dict(ASK), 1)

    asyncio.run(run())
    quotas.close()
