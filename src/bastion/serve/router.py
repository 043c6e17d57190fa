"""Route a request along a served name's deployments: priority tiers, balanced within a tier, healthy first.

A route is a list of tiers (``route = [["a", "b"], ["c"]]``, then each of ``fallbacks`` as a tier of its
own). Within a tier the order is drawn per request: at random by ``weight`` (``balance = "weighted"``) or
fewest requests in flight first (``"least_outstanding"``); every other deployment of the tier comes before
the next tier, so a failing pick fails over inside its tier first.

The router only orders names; whether each candidate may answer *for this caller* is decided by the
gateway (Cedar, admission, withdrawal, breaker) as the route reaches it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.config import ModelSettings
from bastion.serve.backends import Backend


@dataclass(frozen=True)
class Route:
    """The deployments of one served name, in priority tiers, and how a tier picks among its own."""

    tiers: tuple[tuple[str, ...], ...]
    balance: str = "weighted"

    @classmethod
    def of(cls, model: ModelSettings) -> Route:
        """The route of a configured model: its ``route`` (or itself), then each fallback as a tier."""
        first = model.route or ((model.name,),)
        return cls((*first, *((fb,) for fb in model.fallbacks)), model.balance)

    def names(self) -> list[str]:
        """Every deployment of the route, tier by tier, in configured order."""
        return [n for tier in self.tiers for n in tier]


class Router:
    """Model name -> backend, each served name's route, and requests in flight per deployment."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        fallbacks: Mapping[str, tuple[str, ...]] | None = None,
        *,
        routes: Mapping[str, Route] | None = None,
        weights: Mapping[str, float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.backends = dict(backends)
        self.routes = {n: Route(((n,), *((fb,) for fb in fbs))) for n, fbs in (fallbacks or {}).items()}
        self.routes.update(routes or {})
        self.weights = dict(weights or {})
        #: requests (or open streams) each deployment is answering right now, on this gateway
        self.outstanding: dict[str, int] = {}
        #: the draws of weighted balancing and retry jitter
        self.rng = rng or random.Random()  # noqa: S311 - load spreading, not a secret

    @classmethod
    def from_settings(cls, backends: Mapping[str, Backend], models: Iterable[ModelSettings]) -> Router:
        """The router of the configured models."""
        models = list(models)
        routes = {m.name: Route.of(m) for m in models}
        return cls(backends, routes=routes, weights={m.name: m.weight for m in models})

    def route(self, name: str) -> list[str]:
        """The names to try for ``name``: tier by tier, balanced within each; healthy ones before the others.

        A backend whose last health check failed is still tried as a last resort: it may have come
        back since, and a real failure answers 503 at once anyway.
        """
        route = self.routes.get(name) or Route(((name,),))
        names = [n for tier in route.tiers for n in self._order(tier, route.balance) if n in self.backends]
        healthy = [n for n in names if self.backends[n].healthy()]
        return healthy + [n for n in names if n not in healthy]

    def tiers(self, name: str) -> list[list[str]]:
        """The configured tiers of ``name``'s route (for ``GET /admin/routes``)."""
        route = self.routes.get(name) or Route(((name,),))
        return [list(tier) for tier in route.tiers]

    def _order(self, tier: tuple[str, ...], balance: str) -> list[str]:
        if len(tier) == 1:
            return list(tier)
        # A weighted draw without replacement: Efraimidis-Spirakis keys (u ** (1 / w), largest first).
        weights = self.weights
        keyed = sorted(tier, key=lambda n: self.rng.random() ** (1.0 / weights.get(n, 1.0)), reverse=True)
        if balance == "least_outstanding":
            keyed.sort(key=lambda n: self.outstanding.get(n, 0))  # stable: ties keep the weighted draw
        return keyed

    def begin(self, name: str) -> None:
        """``name`` starts answering a request (or stream)."""
        self.outstanding[name] = self.outstanding.get(name, 0) + 1

    def end(self, name: str) -> None:
        """``name`` finished answering one."""
        self.outstanding[name] = max(0, self.outstanding.get(name, 0) - 1)

    def add(self, name: str, backend: Backend) -> None:
        """Serve a model that was not served before (an admission picked up at reload)."""
        self.backends[name] = backend

    def swap(self, name: str, backend: Backend) -> Backend:
        """Serve ``name`` from ``backend`` from now on; returns the one it replaces (to close)."""
        old = self.backends[name]
        self.backends[name] = backend
        return old
