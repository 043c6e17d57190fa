"""A circuit breaker per deployment: a dead backend costs one failed attempt per window, not one per request.

closed     requests go through; ``failures`` consecutive failures open the circuit
open       requests skip this deployment (straight to the next candidate) for ``cooldown_s``
half-open  after the cooldown, exactly one request is let through as a probe: success closes the
           circuit, failure opens it for another cooldown; other requests keep skipping meanwhile

LiteLLM's open issue #40405 describes the cost of not having this: every request in an outage paid for
the dead primary's retries (5-6 s each). Here a request reaches an open deployment only as the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: gauge values of ``bastion_breaker_state``
STATES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class Breaker:
    """The state of one deployment's circuit (runs on the event loop thread: no lock needed)."""

    failures: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    state: str = "closed"
    _consecutive: int = 0
    _opened_at: float = 0.0
    _probing: bool = False

    def allow(self) -> bool:
        """May a request try this deployment now? (True at most once per half-open window.)"""
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
            self.state = "half_open"
            self._probing = False
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """The deployment answered: close the circuit."""
        self.state = "closed"
        self._consecutive = 0
        self._probing = False

    def failure(self) -> None:
        """The deployment failed (unavailable, timed out): count it; open after ``failures`` in a row."""
        self._consecutive += 1
        if self.state == "half_open" or self._consecutive >= self.failures:
            self.state = "open"
            self._opened_at = self.clock()
            self._probing = False

    def open_for(self, seconds: float) -> None:
        """Open now and stay open ``seconds`` (an upstream asked for that long with Retry-After)."""
        self.state = "open"
        self._opened_at = self.clock() - self.cooldown_s + seconds
        self._probing = False

    def release(self) -> None:
        """A probe ended without telling success from failure (e.g. a 400): let the next one probe."""
        self._probing = False
