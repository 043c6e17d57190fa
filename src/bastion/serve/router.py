"""Route a request to a model's backend, falling back along the configured chain when it is down."""

from __future__ import annotations

from collections.abc import Mapping

from bastion.errors import BackendUnavailable, NotFound
from bastion.serve.backends import Backend


class Router:
    """Model name -> backend, plus each model's fallback chain."""

    def __init__(self, backends: Mapping[str, Backend], fallbacks: Mapping[str, tuple[str, ...]]) -> None:
        self.backends = dict(backends)
        self.fallbacks = dict(fallbacks)

    def get(self, name: str) -> Backend:
        """The backend serving ``name``, or NotFound."""
        try:
            return self.backends[name]
        except KeyError:
            raise NotFound(
                f"model {name!r} is not served here",
                hint="List the models you may call with GET /v1/models.",
                param="model",
            ) from None

    def chain(self, name: str) -> list[Backend]:
        """The backends to try for ``name``: healthy ones in configured order, then the others.

        A backend whose last health check failed is still tried as a last resort: it may have come
        back since, and a real failure answers 503 at once anyway.
        """
        names = (name, *self.fallbacks.get(name, ()))
        backends = [self.backends[n] for n in names if n in self.backends]
        ordered = [b for b in backends if b.healthy()] + [b for b in backends if not b.healthy()]
        if not ordered:
            raise BackendUnavailable(
                f"model {name!r} and its fallbacks are unavailable",
                hint="Check 'GET /healthz' and the gateway log for the backend's error.",
            )
        return ordered
