"""Requests and tokens per minute, and token budgets per period, for nested scopes.

A request belongs to several scopes at once: its key, each of the key's groups, and the organisation.
Before anything is sent to a model the gateway *reserves* one request and the most tokens the request
can use (the prompt's upper bound plus ``max_tokens``) in every scope, all or nothing; when the answer is
complete it *settles* the reservation with the tokens really used. Because the reservation is taken
before the first byte leaves and is never smaller than what can be spent, concurrent requests cannot
overspend a limit (LiteLLM's budget issues come from counting after the fact). The stricter limit
always wins: a request is admitted only if every scope has room.

Everything here runs on the gateway's event loop thread, so reservations need no lock; durable budget
counters are the :class:`~bastion.quota.store.UsageStore`'s job.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bastion.errors import Busy

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """The limits of one scope; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    #: tokens allowed per budget period (see :func:`period_start`)
    budget_tokens: int | None = None


@dataclass
class _Window:
    """Sliding one-minute window of (time, requests, tokens) entries."""

    entries: deque[list[float]] = field(default_factory=deque)
    requests: int = 0
    tokens: int = 0

    def expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - WINDOW_S:
            _, requests, tokens = self.entries.popleft()
            self.requests -= int(requests)
            self.tokens -= int(tokens)

    def reset_in(self, now: float) -> float:
        return max(0.0, self.entries[0][0] + WINDOW_S - now) if self.entries else 0.0


@dataclass
class _Scope:
    limits: Limits
    window: _Window = field(default_factory=_Window)
    #: tokens spent in the current budget period (durable, loaded at start) plus open reservations
    budget_used: int = 0


@dataclass
class Reservation:
    """What one request holds until it settles."""

    scopes: tuple[str, ...]
    tokens: int
    entries: list[list[float]]
    settled: bool = False


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
    """Reserve-then-settle accounting over named scopes (``key:ID``, ``group:NAME``, ``org``)."""

    def __init__(self, limits: dict[str, Limits], clock: Callable[[], float] = time.monotonic) -> None:
        self._scopes = {name: _Scope(lim) for name, lim in limits.items()}
        self._clock = clock

    def set_limits(self, scope: str, limits: Limits) -> None:
        """Limits for a scope not configured up front (e.g. a key with its own limits)."""
        if scope not in self._scopes:
            self._scopes[scope] = _Scope(limits)

    def scope_names(self) -> list[str]:
        """Every scope with limits."""
        return list(self._scopes)

    def load_budget(self, scope: str, used: int) -> None:
        """Tokens already spent this period (from the durable store, at start-up)."""
        if scope in self._scopes:
            self._scopes[scope].budget_used = used

    def reserve(self, scopes: Iterable[str], tokens: int) -> Reservation:
        """Hold one request and ``tokens`` in every limited scope, or raise QuotaExceeded holding nothing."""
        now = self._clock()
        names = tuple(s for s in scopes if s in self._scopes)
        for name in names:
            scope = self._scopes[name]
            scope.window.expire(now)
            lim = scope.limits
            if lim.rpm is not None and scope.window.requests + 1 > lim.rpm:
                raise self._exceeded(name, "requests per minute", scope.window.reset_in(now), names, now)
            if lim.tpm is not None and scope.window.tokens + tokens > lim.tpm:
                if tokens > lim.tpm:
                    raise self._exceeded(name, "tokens per minute (this request alone)", math.inf, names, now)
                raise self._exceeded(name, "tokens per minute", scope.window.reset_in(now), names, now)
            if lim.budget_tokens is not None and scope.budget_used + tokens > lim.budget_tokens:
                raise self._exceeded(name, "token budget for this period", math.inf, names, now)
        entries = []
        for name in names:
            scope = self._scopes[name]
            entry = [now, 1.0, float(tokens)]
            scope.window.entries.append(entry)
            scope.window.requests += 1
            scope.window.tokens += tokens
            scope.budget_used += tokens
            entries.append(entry)
        return Reservation(names, tokens, entries)

    def settle(self, reservation: Reservation, used: int) -> None:
        """Replace the reserved tokens with the ``used`` ones (the request still counts); idempotent."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = used - reservation.tokens
        now = self._clock()
        for name, entry in zip(reservation.scopes, reservation.entries, strict=True):
            scope = self._scopes[name]
            scope.budget_used += delta
            if entry[0] > now - WINDOW_S:  # still in the window: adjust it in place
                entry[2] += delta
                scope.window.tokens += delta

    def headroom(self, scopes: Iterable[str]) -> Headroom | None:
        """The tightest remaining requests and tokens among ``scopes`` (None when none is limited)."""
        now = self._clock()
        best_r: tuple[int, int, float] | None = None
        best_t: tuple[int, int, float] | None = None
        for name in scopes:
            scope = self._scopes.get(name)
            if scope is None:
                continue
            scope.window.expire(now)
            reset = scope.window.reset_in(now)
            if scope.limits.rpm is not None:
                left = scope.limits.rpm - scope.window.requests
                if best_r is None or left < best_r[1]:
                    best_r = (scope.limits.rpm, left, reset)
            if scope.limits.tpm is not None:
                left = scope.limits.tpm - scope.window.tokens
                if best_t is None or left < best_t[1]:
                    best_t = (scope.limits.tpm, left, reset)
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

    def _exceeded(
        self, scope: str, what: str, wait: float, names: tuple[str, ...], now: float
    ) -> QuotaExceeded:
        headroom = self.headroom(names) or Headroom(None, None, 0.0, None, None, 0.0)
        when = "not in this period" if math.isinf(wait) else f"in {wait:.1f} s"
        return QuotaExceeded(f"{scope} has used its {what}; retry {when}", wait, headroom)
