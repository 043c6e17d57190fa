"""``bastion drill``: prove that routes survive losing a deployment, against a live gateway.

For each target (every upstream deployment that has fallbacks, or the ones named), the drill drives real
chat requests through the gateway in three phases — before, with the deployment taken away, after it is
given back — and reports what clients saw: errors (the goal is none), latency p50/p99 per phase, how long
traffic took to shift, and which deployment answered. The deployment is taken away through the gateway's
``POST /admin/drill`` (from the gateway host, or with an administrator key); with ``take_away=False``
the drill only drives traffic and measures, while something else takes the deployment away (kills the
upstream process, pulls a cable).

Requests are not streamed: a stream cut after bytes reached the client cannot be retried elsewhere
(that would send the client two answers), so a streamed request during an outage is an honest error.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.drill.capability import EvalPlan, capability_cost
from bastion.errors import BackendUnavailable, UsageError

PROMPT = [{"role": "user", "content": "Reply with one word: ready?"}]


@dataclass
class Shot:
    """One request of the drill: when it ended, how long it took, who answered, or the error."""

    ended: float
    seconds: float
    status: int
    answered_by: str
    error: str = ""


@dataclass
class Phase:
    """The requests of one phase and what clients saw."""

    name: str
    shots: list[Shot] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        latencies = sorted(s.seconds * 1000 for s in self.shots if not s.error)
        return {
            "phase": self.name,
            "requests": len(self.shots),
            "errors": sum(1 for s in self.shots if s.error),
            "error_samples": sorted({s.error for s in self.shots if s.error})[:5],
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(_percentile(latencies, 0.99), 1) if latencies else None,
            "answered_by": dict(Counter(s.answered_by for s in self.shots if not s.error)),
        }


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class TargetReport:
    """The drill of one deployment."""

    model: str
    fallbacks: list[str]
    phases: list[Phase]
    #: seconds from taking the deployment away to the first answer from a fallback
    time_to_shift_s: float | None
    #: with an eval plan: the task's score on the primary and each fallback, and the differences
    capability: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        phases = [p.summary() for p in self.phases]
        before, during = phases[0], phases[1]
        added = (
            round(during["p50_ms"] - before["p50_ms"], 1)
            if during["p50_ms"] is not None and before["p50_ms"] is not None
            else None
        )
        return {
            "model": self.model,
            "fallbacks": self.fallbacks,
            "client_errors": sum(p["errors"] for p in phases),
            "added_p50_ms_during_failover": added,
            "time_to_shift_s": None if self.time_to_shift_s is None else round(self.time_to_shift_s, 3),
            "phases": phases,
            **({"capability": self.capability} if self.capability is not None else {}),
        }


@dataclass(frozen=True)
class DrillOptions:
    """How hard and how long to drill."""

    requests: int = 40
    concurrency: int = 4
    max_tokens: int = 8
    take_away: bool = True
    #: with take_away=False: called once the failover phase has started (e.g. kill the upstream)
    on_failover: Callable[[], None] | None = None
    #: also measure what each fallback costs in capability (``--eval TASK --limit K``), once restored
    eval: EvalPlan | None = None


class Drill:
    """A drill against the gateway at ``base`` (e.g. http://127.0.0.1:8080), calling with ``api_key``."""

    def __init__(self, base: str, api_key: str, admin_key: str | None = None, timeout: float = 120.0) -> None:
        self.base = base.rstrip("/")
        self.api_key = api_key
        admin = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        # Never follow redirects: the drill talks to the gateway it was pointed at and nothing else.
        self._admin = httpx.Client(base_url=self.base, headers=admin, timeout=timeout, follow_redirects=False)
        self._timeout = timeout

    def close(self) -> None:
        self._admin.close()

    def routes(self) -> dict[str, Any]:
        """The gateway's routes (``GET /admin/routes``)."""
        r = self._admin.get("/admin/routes")
        if r.status_code == 403:
            raise UsageError(
                "the gateway refused GET /admin/routes: the drill needs administrator access",
                hint="Run the drill on the gateway host, or pass --admin-key with a key in the admin group.",
            )
        r.raise_for_status()
        routes: dict[str, Any] = r.json()
        return routes

    def targets(self, names: list[str] | None = None) -> list[str]:
        """The named models, or every upstream deployment that has fallbacks."""
        routes = self.routes()
        if names:
            unknown = [n for n in names if n not in routes]
            if unknown:
                raise UsageError(f"the gateway serves no model named {', '.join(unknown)}",
                                 hint=f"It serves: {', '.join(routes)}.")
            return names
        return [name for name, r in routes.items() if not r["local"] and r["fallbacks"]]

    def run(self, model: str, options: DrillOptions) -> TargetReport:
        """Drill one deployment: before, taken away, given back."""
        fallbacks = list(self.routes()[model]["fallbacks"])
        before = self._phase("before", model, options.requests // 2 or 1, options)
        taken_at = time.monotonic()
        if options.take_away:
            self._set_down(model, True)
        elif options.on_failover is not None:
            threading.Thread(target=options.on_failover, daemon=True).start()
        try:
            during = self._phase("failover", model, options.requests, options)
        finally:
            if options.take_away:
                self._set_down(model, False)
        after = self._phase("after", model, options.requests // 2 or 1, options)
        shifted = [s.ended for s in during.shots if not s.error and s.answered_by != model]
        capability = None
        if options.eval is not None:
            capability = capability_cost(self.base, self.api_key, model, fallbacks, options.eval,
                                         self._timeout)
        return TargetReport(model, fallbacks, [before, during, after],
                            min(shifted) - taken_at if shifted else None, capability)

    def _set_down(self, model: str, down: bool) -> None:
        r = self._admin.post("/admin/drill", json={"model": model, "down": down})
        if r.status_code != 200:
            raise BackendUnavailable(f"the gateway would not {'take away' if down else 'restore'} {model}: "
                                     f"{r.status_code} {r.text[:200]}")

    def _phase(self, name: str, model: str, count: int, options: DrillOptions) -> Phase:
        phase = Phase(name)
        lock = threading.Lock()
        body = {"model": model, "messages": PROMPT, "max_tokens": options.max_tokens, "temperature": 0}

        def one(client: httpx.Client) -> None:
            started = time.monotonic()
            try:
                r = client.post("/chat/completions", json=body)
                error = "" if r.status_code == 200 else f"HTTP {r.status_code}"
                shot = Shot(time.monotonic(), time.monotonic() - started, r.status_code,
                            r.headers.get("x-bastion-model", ""), error)
            except httpx.HTTPError as exc:
                shot = Shot(time.monotonic(), time.monotonic() - started, 0, "", type(exc).__name__)
            with lock:
                phase.shots.append(shot)

        headers = {"Authorization": f"Bearer {self.api_key}"}
        with (httpx.Client(base_url=self.base + "/v1", headers=headers, timeout=self._timeout,
                           follow_redirects=False) as client,
              ThreadPoolExecutor(max_workers=options.concurrency) as pool):
            for future in [pool.submit(one, client) for _ in range(count)]:
                future.result()
        return phase
