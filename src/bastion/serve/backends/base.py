"""The backend seam: what the gateway needs from anything that can answer a model request.

Backends speak OpenAI JSON: they receive the validated request body as a dict and return the response
body as bytes (non-streaming) or yield one JSON chunk per SSE event (streaming). Keeping bodies as
plain JSON lets the upstream backend pass bytes through untouched.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from bastion.registry import ServedWeights

Endpoint = Literal["chat", "completion", "embedding"]


class Cancel:
    """Set when the client has gone away; backends stop generating at the next token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass
class Usage:
    """Token counts of one request, filled in by the backend (also while streaming)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: False when the backend could not say what the request cost (an upstream that reported no
    #: usage): quotas then charge the whole reservation instead of the counts above
    reported: bool = True


@dataclass(frozen=True)
class Reply:
    """A complete (non-streaming) response body and its token usage."""

    body: bytes
    usage: Usage


@dataclass(frozen=True)
class BackendInfo:
    """What the gateway tells clients and logs about a served model."""

    name: str
    kind: str
    #: "sha256:<hex>" of the weights that answer, or None for an upstream we cannot see
    digest: str | None
    endpoints: frozenset[Endpoint]
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "digest": self.digest,
            "endpoints": sorted(self.endpoints),
            **self.detail,
        }


class Backend(Protocol):
    """One served model."""

    info: BackendInfo

    async def start(self, weights: ServedWeights | None = None) -> None:
        """Load the model or open the connection pool; raise BackendUnavailable on failure.

        ``weights``: sealed bytes the gateway verified against the admission; a local backend loads
        exactly those (and owns them from then on). Without them it seals its configured path itself,
        so the digest it reports always describes the bytes that answer. Upstreams ignore it.
        """

    async def aclose(self) -> None:
        """Release everything; safe to call twice."""

    def healthy(self) -> bool:
        """False while the backend is known to be down (requests then go to fallbacks)."""

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        """Answer a non-streaming request."""

    def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        """Yield the JSON of each streamed chunk (without the SSE framing), updating ``usage``."""
