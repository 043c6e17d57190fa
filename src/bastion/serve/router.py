"""Route a request along a model's candidates: the model itself, then its fallbacks, healthy ones first.

The router only orders names; whether each candidate may answer *for this caller* is decided by the
gateway (Cedar, admission) as the route reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping

from bastion.serve.backends import Backend


class Router:
    """Model name -> backend, plus each model's fallback chain."""

    def __init__(self, backends: Mapping[str, Backend], fallbacks: Mapping[str, tuple[str, ...]]) -> None:
        self.backends = dict(backends)
        self.fallbacks = dict(fallbacks)

    def route(self, name: str) -> list[str]:
        """The names to try for ``name``: healthy ones in configured order, then the others.

        A backend whose last health check failed is still tried as a last resort: it may have come
        back since, and a real failure answers 503 at once anyway.
        """
        names = [n for n in (name, *self.fallbacks.get(name, ())) if n in self.backends]
        healthy = [n for n in names if self.backends[n].healthy()]
        return healthy + [n for n in names if n not in healthy]

    def add(self, name: str, backend: Backend) -> None:
        """Serve a model that was not served before (an admission picked up at reload)."""
        self.backends[name] = backend

    def swap(self, name: str, backend: Backend) -> Backend:
        """Serve ``name`` from ``backend`` from now on; returns the one it replaces (to close)."""
        old = self.backends[name]
        self.backends[name] = backend
        return old
