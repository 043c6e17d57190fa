"""The usage store: a settled request is durable before settle returns, on the event loop or in a thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bastion.config import QuotaSettings
from bastion.quota.quotas import Quotas
from bastion.quota.store import UsageStore
from bastion.store import Target

ROW = (("key:k1", "org"), "2026-11-01", "2026-11-30", "k1", "smol", 5, 3)


def test_try_record_writes_the_row_where_another_process_reads_it(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "b.db")
    assert store.try_record(*ROW)
    other = sqlite3.connect(tmp_path / "b.db")
    assert other.execute("SELECT scope, tokens FROM budget_usage ORDER BY scope").fetchall() == [
        ("key:k1", 8), ("org", 8)]
    assert other.execute("SELECT requests, tokens_in, tokens_out FROM daily_usage").fetchall() == [(1, 5, 3)]
    other.close()
    store.close()


def test_try_record_gives_up_at_once_while_another_writer_holds_the_database(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "b.db")
    writer = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # e.g. 'bastion keys create' in another process
    started = time.monotonic()
    assert store.try_record(*ROW) is False
    assert time.monotonic() - started < 1.0  # not the 10 s busy timeout of the waiting path
    writer.execute("ROLLBACK")
    writer.close()
    assert store.budget_used("key:k1", "2026-11-01") == 0  # nothing half-written by the attempt
    assert store.try_record(*ROW)
    assert store.budget_used("key:k1", "2026-11-01") == 8
    store.close()


def test_settle_waits_for_a_busy_database_and_still_records(tmp_path: Path) -> None:
    quotas = Quotas(QuotaSettings(enabled=True), UsageStore(tmp_path / "b.db"))
    body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}]}
    held = asyncio.run(quotas.reserve("k1", (), body, 4))
    writer = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")

    async def settle_while_locked() -> None:
        settling = asyncio.ensure_future(quotas.settle(held, "smol", 5, 3))
        await asyncio.sleep(0.3)
        assert not settling.done()  # waiting in a thread for the lock, not failed, not skipped
        writer.execute("ROLLBACK")
        await settling

    asyncio.run(settle_while_locked())
    writer.close()
    rows = quotas.store.daily()
    assert [(r.key_id, r.model, r.requests, r.tokens_in, r.tokens_out) for r in rows] == [("k1", "smol", 1, 5, 3)]
    assert quotas.store.budget_used("key:k1", quotas._period) == 0  # no key limits: no key scope
    assert quotas.store.budget_used("org", quotas._period) == 8
    quotas.close()


def test_a_running_gateway_renews_its_lease_and_a_clean_stop_ends_it(store_target: Target) -> None:
    quotas = Quotas(QuotaSettings(enabled=True, lease_s=1.5, organisation={"budget_tokens": 100}),
                    UsageStore(store_target))
    body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}]}  # reserves 34 + 16 = 50

    async def run() -> None:
        quotas.start()
        await quotas.reserve("k1", (), body, 16)
        await asyncio.sleep(3.0)  # twice the lease: only renewals keep the hold counting
        assert quotas.store.held("org", quotas._period, time.time()) == 50
        await quotas.stop()  # SIGTERM: the lease ends now, not lease_s later
        assert quotas.store.held("org", quotas._period, time.time()) == 0

    asyncio.run(run())
    quotas.close()
