"""Requests and tokens per minute, and token budgets per period, for nested scopes: the decision.

A request belongs to several scopes at once: its key, each of the key's groups, and the organisation.
Before anything is sent to a model the gateway *reserves* one request and the most tokens the request
can use (the prompt's upper bound plus ``max_tokens``) in every scope, all or nothing; when the answer is
complete it *settles* the reservation with the tokens really used. Because the reservation is taken
before the first byte leaves and is never smaller than what can be spent, concurrent requests cannot
overspend a limit (LiteLLM's budget issues come from counting after the fact). The stricter limit
always wins: a request is admitted only if every scope has room.

The counts live in the store, shared by every worker and replica (:mod:`bastion.quota.ledger` reads
and writes them in one transaction); this module decides from what the transaction read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bastion.errors import Busy

#: the sliding window of rpm and tpm, in seconds; counted in one-second buckets (see ledger.py)
WINDOW_S = 60


@dataclass(frozen=True)
class Limits:
    """The limits of one scope; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    #: tokens allowed per budget period (see :func:`period_start`)
    budget_tokens: int | None = None


@dataclass(frozen=True)
class ScopeUse:
    """What one scope has used, as read under its lock: the last minute and the budget period."""

    scope: str
    limits: Limits
    #: requests and tokens in the sliding window
    requests: int = 0
    tokens: int = 0
    #: the oldest one-second bucket still in the window (when it leaves, room frees up)
    oldest_s: int | None = None
    #: settled spend this period plus the live reservations of every replica
    budget_used: int = 0

    def reset_in(self, now: float) -> float:
        return max(0.0, self.oldest_s + WINDOW_S - now) if self.oldest_s is not None else 0.0


@dataclass(frozen=True)
class Headroom:
    """What the tightest scope has left, for OpenAI-style ``x-ratelimit-*`` headers."""

    limit_requests: int | None
    remaining_requests: int | None
    reset_requests_s: float
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens_s: float

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers for the limits that are set."""
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            out["x-ratelimit-remaining-requests"] = str(max(self.remaining_requests or 0, 0))
            out["x-ratelimit-reset-requests"] = f"{self.reset_requests_s:.3f}s"
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            out["x-ratelimit-remaining-tokens"] = str(max(self.remaining_tokens or 0, 0))
            out["x-ratelimit-reset-tokens"] = f"{self.reset_tokens_s:.3f}s"
        return out


NO_HEADROOM = Headroom(None, None, 0.0, None, None, 0.0)


@dataclass(frozen=True)
class Reservation:
    """What one request holds until it settles: its hold rows and its window bucket, by id."""

    id: str
    scopes: tuple[str, ...]
    tokens: int
    period: str
    #: the one-second window bucket the request was counted in
    second: int
    headroom: Headroom | None = None


class QuotaExceeded(Busy):
    """A request would exceed a rate limit or budget: 429 with Retry-After."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float, headroom: Headroom) -> None:
        super().__init__(message, hint="Wait as long as the Retry-After header says, or ask for more.")
        self.retry_after_s = retry_after_s
        self.headroom = headroom


def period_start(period: str, now: datetime) -> str:
    """The start of the budget period containing ``now`` (UTC): day, week (Monday) or month."""
    day = now.astimezone(UTC).date()
    if period == "day":
        start = day
    elif period == "week":
        start = day.fromordinal(day.toordinal() - day.weekday())
    else:
        start = day.replace(day=1)
    return start.isoformat()


class Limiter:
    """The limits of named scopes (``key:ID``, ``group:NAME``, ``org``) and the admission decision."""

    def __init__(self, limits: dict[str, Limits]) -> None:
        self._limits = dict(limits)

    def set_limits(self, scope: str, limits: Limits) -> None:
        """Limits for a scope not configured up front (e.g. every key, with the key limits)."""
        self._limits.setdefault(scope, limits)

    def limited(self, scopes: Iterable[str]) -> dict[str, Limits]:
        """The scopes among ``scopes`` that have limits, with them (the request counts in these)."""
        return {s: self._limits[s] for s in scopes if s in self._limits}

    def admit(self, uses: Sequence[ScopeUse], tokens: int, now: float) -> Headroom | None:
        """The headroom left once one request of ``tokens`` is counted, or QuotaExceeded (first scope
        without room, in the order given)."""
        for use in uses:
            lim = use.limits
            if lim.rpm is not None and use.requests + 1 > lim.rpm:
                raise _exceeded(use.scope, "requests per minute", use.reset_in(now), uses, now)
            if lim.tpm is not None and use.tokens + tokens > lim.tpm:
                if tokens > lim.tpm:
                    raise _exceeded(use.scope, "tokens per minute (this request alone)", math.inf, uses, now)
                raise _exceeded(use.scope, "tokens per minute", use.reset_in(now), uses, now)
            if lim.budget_tokens is not None and use.budget_used + tokens > lim.budget_tokens:
                raise _exceeded(use.scope, "token budget for this period", math.inf, uses, now)
        return headroom(uses, now, 1, tokens)


def headroom(uses: Sequence[ScopeUse], now: float, requests: int = 0, tokens: int = 0) -> Headroom | None:
    """The tightest remaining requests and tokens among ``uses`` once ``requests`` and ``tokens`` more
    are counted (None when no scope has a per-minute limit)."""
    best_r: tuple[int, int, float] | None = None
    best_t: tuple[int, int, float] | None = None
    for use in uses:
        reset = use.reset_in(now) if use.oldest_s is not None or not requests else WINDOW_S
        if use.limits.rpm is not None:
            left = use.limits.rpm - use.requests - requests
            if best_r is None or left < best_r[1]:
                best_r = (use.limits.rpm, left, reset)
        if use.limits.tpm is not None:
            left = use.limits.tpm - use.tokens - tokens
            if best_t is None or left < best_t[1]:
                best_t = (use.limits.tpm, left, reset)
    if best_r is None and best_t is None:
        return None
    return Headroom(
        best_r[0] if best_r else None,
        best_r[1] if best_r else None,
        best_r[2] if best_r else 0.0,
        best_t[0] if best_t else None,
        best_t[1] if best_t else None,
        best_t[2] if best_t else 0.0,
    )


def _exceeded(scope: str, what: str, wait: float, uses: Sequence[ScopeUse], now: float) -> QuotaExceeded:
    when = "not in this period" if math.isinf(wait) else f"in {wait:.1f} s"
    room = headroom(uses, now) or NO_HEADROOM
    return QuotaExceeded(f"{scope} has used its {what}; retry {when}", wait, room)
