"""Reserve-then-settle limits over nested scopes, with a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bastion.quota import Limiter, Limits, QuotaExceeded, period_start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_slide_with_the_window() -> None:
    clock = Clock()
    limiter = Limiter({"key:a": Limits(rpm=2)}, clock)
    limiter.reserve(["key:a"], 0)
    clock.now += 30
    limiter.reserve(["key:a"], 0)
    with pytest.raises(QuotaExceeded) as over:
        limiter.reserve(["key:a"], 0)
    assert over.value.retry_after_s == pytest.approx(30.0)
    assert over.value.http_status == 429
    clock.now += 30.01  # the first request left the window
    limiter.reserve(["key:a"], 0)


def test_the_stricter_scope_wins_and_a_refusal_holds_nothing() -> None:
    limiter = Limiter({"key:a": Limits(tpm=1000), "group:g": Limits(tpm=100), "org": Limits(tpm=10_000)}, Clock())
    limiter.reserve(["key:a", "group:g", "org"], 60)
    with pytest.raises(QuotaExceeded, match="group:g has used its tokens per minute"):
        limiter.reserve(["key:a", "group:g", "org"], 60)
    room = limiter.headroom(["key:a", "group:g", "org"])
    assert room is not None and room.remaining_tokens == 40 and room.limit_tokens == 100
    assert room.remaining_requests is None  # no request limit is set anywhere


def test_settling_refunds_what_was_reserved_but_not_used() -> None:
    clock = Clock()
    limiter = Limiter({"key:a": Limits(tpm=100, budget_tokens=150)}, clock)
    held = limiter.reserve(["key:a"], 90)
    with pytest.raises(QuotaExceeded):
        limiter.reserve(["key:a"], 20)
    limiter.settle(held, 10)
    limiter.settle(held, 10)  # idempotent
    limiter.reserve(["key:a"], 80)
    clock.now += 61  # the minute is over; the period's budget is not
    with pytest.raises(QuotaExceeded, match="budget"):
        limiter.reserve(["key:a"], 61)  # 10 + 80 + 61 > 150


def test_a_request_larger_than_the_limit_is_refused_for_good() -> None:
    limiter = Limiter({"key:a": Limits(tpm=100)}, Clock())
    with pytest.raises(QuotaExceeded, match="this request alone") as over:
        limiter.reserve(["key:a"], 101)
    assert over.value.retry_after_s == float("inf")


def test_budget_periods_start_on_day_monday_and_first_of_month() -> None:
    when = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # a Thursday
    assert period_start("day", when) == "2026-11-26"
    assert period_start("week", when) == "2026-11-23"
    assert period_start("month", when) == "2026-11-01"
