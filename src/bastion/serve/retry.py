"""Retries at one deployment, before the first byte reaches the client, with jittered exponential backoff.

What is retried: a transient failure (:class:`BackendUnavailable` itself: unreachable, reset, a 5xx)
and an upstream's 429 whose ``Retry-After`` is short enough to wait out (``retry_after_max_s``). What is
not: a timeout (:class:`UpstreamTimedOut`: the attempt already spent its time budget, and a retry would
double the wait before the route moves on), a broken answer (:class:`BadGateway`: not JSON, another
model, a redirect; asking again gets the same answer), a longer 429 (the route moves on and the
deployment's circuit opens for that long), and anything once bytes reached the client: the caller only
retries the call that produces the first chunk, so a stream that breaks later is never sent twice.

A retry asks the deployment's breaker first: when the failure just opened the circuit, the retry is not
made (an open circuit costs no attempt), and the route moves on. The backoff is "full jitter" (a random
wait between 0 and ``min(max, base * 2**n)``): clients that failed together do not come back together.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, UpstreamRateLimited
from bastion.serve.backends import Cancel

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One call to one deployment: who, how it ended ("answered" or an error code), the wait before it."""

    model: str
    outcome: str
    backoff_ms: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"model": self.model, "outcome": self.outcome, "backoff_ms": round(self.backoff_ms, 1)}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a route retries one deployment."""

    retries: int = 1
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    retry_after_max_s: float = 1.0

    @classmethod
    def of(cls, settings: ModelSettings) -> RetryPolicy:
        """The policy of the route of a configured model."""
        return cls(settings.retries, settings.retry_backoff_s, settings.retry_backoff_max_s,
                   settings.retry_after_max_s)

    def wait(self, error: BastionError, retry: int, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based) after ``error``; None: do not retry."""
        if retry >= self.retries:
            return None
        if isinstance(error, UpstreamRateLimited):
            return error.retry_after_s if error.retry_after_s <= self.retry_after_max_s else None
        if type(error) is BackendUnavailable:  # exactly: not a timeout, not a broken answer
            return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2**retry))
        return None


async def attempt(
    name: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    failed: Callable[[BastionError], None],
    allow: Callable[[], bool],
    record: list[Attempt],
    cancel: Cancel,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``call()`` at deployment ``name``, retried under ``policy``; each attempt is added to ``record``.

    ``failed`` hears every failure that is retried (the breaker counts it; a 429 that is waited out is
    not one); ``allow`` is the breaker's leave to try again. The last failure is raised for the caller
    to handle as before (move on to the next candidate).
    """
    waited = 0.0
    for retry in range(policy.retries + 1):
        try:
            result = await call()
        except BackendUnavailable as exc:
            record.append(Attempt(name, exc.code, waited * 1000))
            delay = None if cancel.is_set() else policy.wait(exc, retry, rng)
            if delay is None:
                raise
            if not isinstance(exc, UpstreamRateLimited):
                failed(exc)
                if not allow():
                    # The circuit just opened: no more attempts here. The caller counts this failure
                    # once more; on an open circuit that only restarts its window at the same instant.
                    raise
            await sleep(delay)
            waited = delay
            continue
        record.append(Attempt(name, "answered", waited * 1000))
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")
