"""Shared reserve-then-settle limits over nested scopes, in the store, with a clock the test moves.

Every test runs on a SQLite file and on PostgreSQL: the counts live in the database, not in a process.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from datetime import UTC, datetime

import pytest

from bastion.quota import Limiter, Limits, QuotaExceeded, Reservation, UsageStore, period_start
from bastion.quota.store import Settlement
from bastion.store import Target
from tests.conftest import raw_sql

PERIOD = "2026-11-01"


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


class Ledger:
    """One gateway process's view: its own lease (``owner``) on the shared store."""

    def __init__(self, target: Target, limits: dict[str, Limits], clock: Clock, lease_s: float = 3600) -> None:
        self.store = UsageStore(target)
        self.limiter = Limiter(limits)
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self.store.renew(self.owner, clock.now + lease_s, clock.now)

    def reserve(self, scopes: list[str], tokens: int) -> Reservation:
        return self.store.reserve(self.limiter, self.limiter.limited(scopes), tokens, PERIOD, self.owner,
                                  self.clock.now, uuid.uuid4().hex)

    def settle(self, reservation: Reservation, used: int) -> None:
        self.store.settle(Settlement(reservation, PERIOD, "k", "m", used, 0, used), self.clock.now)


def test_requests_per_minute_slide_with_the_window(store_target: Target) -> None:
    clock = Clock()
    ledger = Ledger(store_target, {"key:a": Limits(rpm=2)}, clock)
    ledger.reserve(["key:a"], 0)
    clock.now += 30
    ledger.reserve(["key:a"], 0)
    with pytest.raises(QuotaExceeded) as over:
        ledger.reserve(["key:a"], 0)
    assert over.value.retry_after_s == pytest.approx(30.0)
    assert over.value.http_status == 429
    clock.now += 30.01  # the first request left the window
    ledger.reserve(["key:a"], 0)
    ledger.store.close()


def test_the_stricter_scope_wins_and_a_refusal_holds_nothing(store_target: Target) -> None:
    clock = Clock()
    scopes = ["key:a", "group:g", "org"]
    ledger = Ledger(store_target, {"key:a": Limits(tpm=1000), "group:g": Limits(tpm=100),
                                   "org": Limits(tpm=10_000, budget_tokens=500)}, clock)
    first = ledger.reserve(scopes, 60)
    assert first.headroom is not None and first.headroom.remaining_tokens == 40
    windows = raw_sql(store_target, "SELECT scope, requests, tokens FROM quota_window ORDER BY scope")
    with pytest.raises(QuotaExceeded, match="group:g has used its tokens per minute") as over:
        ledger.reserve(scopes, 60)
    room = over.value.headroom
    assert room.remaining_tokens == 40 and room.limit_tokens == 100
    assert room.remaining_requests is None  # no request limit is set anywhere
    # all or nothing: the key and organisation were not charged for the refused request either
    assert raw_sql(store_target, "SELECT scope, requests, tokens FROM quota_window ORDER BY scope") == windows
    assert raw_sql(store_target, "SELECT id, scope, tokens FROM quota_hold") == [(first.id, "org", 60)]
    ledger.store.close()


def test_settling_refunds_what_was_reserved_but_not_used(store_target: Target) -> None:
    clock = Clock()
    ledger = Ledger(store_target, {"key:a": Limits(tpm=100, budget_tokens=150)}, clock)
    held = ledger.reserve(["key:a"], 90)
    with pytest.raises(QuotaExceeded):
        ledger.reserve(["key:a"], 20)
    ledger.settle(held, 10)
    assert ledger.store.held("key:a", PERIOD, clock.now) == 0
    assert ledger.store.budget_used("key:a", PERIOD) == 10
    ledger.reserve(["key:a"], 80)
    clock.now += 61  # the minute is over; the period's budget is not
    with pytest.raises(QuotaExceeded, match="budget"):
        ledger.reserve(["key:a"], 61)  # 10 + 80 + 61 > 150
    ledger.store.close()


def test_a_request_larger_than_the_limit_is_refused_for_good(store_target: Target) -> None:
    ledger = Ledger(store_target, {"key:a": Limits(tpm=100)}, Clock())
    with pytest.raises(QuotaExceeded, match="this request alone") as over:
        ledger.reserve(["key:a"], 101)
    assert over.value.retry_after_s == float("inf")
    ledger.store.close()


def test_a_dead_processs_reservations_are_released_when_its_lease_ends(store_target: Target) -> None:
    clock = Clock()
    limits = {"org": Limits(budget_tokens=100)}
    dead = Ledger(store_target, limits, clock, lease_s=30)
    alive = Ledger(store_target, limits, clock, lease_s=3600)
    settled = dead.reserve(["org"], 40)
    dead.settle(settled, 25)  # really used before it died: stays spent
    dead.reserve(["org"], 70)  # in flight when the process was killed: never settles
    with pytest.raises(QuotaExceeded, match="budget"):
        alive.reserve(["org"], 10)  # 25 + 70 + 10 > 100 while the dead lease still runs
    clock.now += 31  # the dead process never renewed: its lease is over
    alive.reserve(["org"], 70)  # 25 settled + 70 held by the living one
    with pytest.raises(QuotaExceeded):
        alive.reserve(["org"], 10)
    assert alive.store.budget_used("org", PERIOD) == 25  # durable spend still counts what was used
    assert alive.store.renew(alive.owner, clock.now + 3600, clock.now) == 1  # the dead hold is swept
    assert raw_sql(store_target, "SELECT count(*) FROM quota_hold WHERE owner = ?", (dead.owner,)) == [(0,)]
    dead.store.close()
    alive.store.close()


def test_a_settle_after_the_lease_ended_still_charges_what_was_used(store_target: Target) -> None:
    clock = Clock()
    ledger = Ledger(store_target, {"org": Limits(budget_tokens=100)}, clock, lease_s=30)
    held = ledger.reserve(["org"], 60)
    clock.now += 31
    assert ledger.store.renew(uuid.uuid4().hex, clock.now + 30, clock.now) == 1  # another replica sweeps
    ledger.settle(held, 50)  # the stalled process comes back and settles
    assert ledger.store.budget_used("org", PERIOD) == 50
    ledger.store.close()


def test_budget_periods_start_on_day_monday_and_first_of_month() -> None:
    when = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # a Thursday
    assert period_start("day", when) == "2026-11-26"
    assert period_start("week", when) == "2026-11-23"
    assert period_start("month", when) == "2026-11-01"


# -- several processes at once ------------------------------------------------------------------------

#: every process reserves this much and spends all of it: 1000 // 30 = 33 requests fit the budget
COST = 30
BUDGET = 1000


def _hammer(job: tuple[Target, dict[str, Limits], float, int, float]) -> list[tuple[float, float]]:
    """One process: from ``start`` on, ``attempts`` reservations of COST, each held ``hold_s`` and then
    settled (spending all of it when ``hold_s`` is 0, else nothing: room opens again and again). Returns
    the admitted ones as (after the reservation committed, before the settle began) wall-clock times."""
    target, limits, start, attempts, hold_s = job
    store = UsageStore(target)
    limiter = Limiter(limits)
    owner = uuid.uuid4().hex
    store.renew(owner, time.time() + 600, time.time())
    time.sleep(max(0.0, start - time.time()))  # every process starts together
    held: list[tuple[float, float]] = []
    for _ in range(attempts):
        try:
            r = store.reserve(limiter, limiter.limited(["key:a", "group:g", "org"]), COST, PERIOD, owner,
                              time.time(), uuid.uuid4().hex)
        except QuotaExceeded:
            continue
        got = time.time()
        time.sleep(hold_s)
        used = 0 if hold_s else COST
        held.append((got, time.time()))
        store.settle(Settlement(r, PERIOD, "a", "m", used, 0, used), time.time())
    store.close()
    return held


def _race(target: Target, limits: dict[str, Limits], processes: int = 4, attempts: int = 25,
          hold_s: float = 0.0) -> list[tuple[float, float]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        start = time.time() + 3.0  # after every child imported bastion
        jobs = [(target, limits, start, attempts, hold_s)] * processes
        return [span for spans in pool.map(_hammer, jobs) for span in spans]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (each is inside its reservation's real lifetime)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_concurrent_reservations_from_several_processes_never_overspend_a_budget(store_target: Target) -> None:
    admitted = len(_race(store_target, {"key:a": Limits(), "group:g": Limits(budget_tokens=5000),
                                        "org": Limits(budget_tokens=BUDGET)}))
    assert admitted == BUDGET // COST  # exactly as many as fit: none over, none lost
    store = UsageStore(store_target)
    assert store.budget_used("org", PERIOD) == COST * admitted <= BUDGET
    assert store.budget_used("group:g", PERIOD) == COST * admitted
    assert sum(row.requests for row in store.daily()) == admitted
    store.close()


def test_concurrent_reservations_from_several_processes_never_exceed_requests_per_minute(
    store_target: Target,
) -> None:
    admitted = len(_race(store_target, {"key:a": Limits(rpm=20), "org": Limits()}))
    assert admitted == 20  # 100 attempts within the minute, 20 admitted across four processes


def test_reservations_held_by_several_processes_never_exceed_the_budget_at_any_instant(
    store_target: Target,
) -> None:
    # 100 tokens hold at most 3 reservations of 30 at once; settling spends nothing, so room opens again
    # and again and eight processes race for it at every edge.
    spans = _race(store_target, {"key:a": Limits(), "org": Limits(budget_tokens=100)}, processes=8,
                  attempts=40, hold_s=0.005)
    assert len(spans) > 8  # room really opened again and again
    assert _most_at_once(spans) <= 3
