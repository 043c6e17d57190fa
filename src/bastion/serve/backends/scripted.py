"""A scripted backend: answers with fixed text, or fails the way a real backend fails.

It plays the part httpx's ``MockTransport`` plays for httpx: the gateway's request flow (authentication,
Cedar on every candidate, routing, audit) can be driven in-process in milliseconds, through an ASGI
transport, without a model. It is never selected by configuration; tests and benches hand it to the
router directly. Everything about the flow is real; only the text generation is scripted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from bastion.errors import BackendUnavailable
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

if TYPE_CHECKING:
    from bastion.registry import ServedWeights


class ScriptedBackend:
    """Answer every request with ``text`` (word by word when streaming); fail when ``up`` is False."""

    def __init__(self, name: str, text: str = "scripted answer", *, digest: str | None = None) -> None:
        self.text = text
        self.up = True
        #: raised by the next requests when set: how a test plays a backend with a bug in it
        self.error: Exception | None = None
        #: requests that reached this backend (including those it failed)
        self.attempts = 0
        #: the next this many requests fail as an unreachable backend does, then it answers again (a
        #: transient failure: what a retry is for)
        self.fail_next = 0
        #: seconds between streamed words (keeps many streams open at once in concurrency tests)
        self.delay_s = 0.0
        #: every request body this backend received, in order (what a test inspects)
        self.received: list[dict[str, Any]] = []
        self.info = BackendInfo(name, "scripted", digest, frozenset({"chat", "completion"}))

    async def start(self, weights: ServedWeights | None = None) -> None:
        """Nothing to load (a scripted backend has no weights; ``weights`` is ignored)."""

    async def aclose(self) -> None:
        """Nothing to release."""

    def healthy(self) -> bool:
        return self.up

    def _check(self, body: dict[str, Any]) -> None:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        if self.fail_next > 0:
            self.fail_next -= 1
            raise BackendUnavailable(f"model {self.info.name!r} failed once (scripted)")
        if not self.up:
            raise BackendUnavailable(f"model {self.info.name!r} is down (scripted)")
        self.received.append(body)

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        self._check(body)
        words = len(self.text.split())
        answer = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.info.name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": self.text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": 1 + words},
        }
        return Reply(orjson.dumps(answer), Usage(1, words))

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        self._check(body)
        usage.prompt_tokens = 1
        for word in self.text.split(" "):
            if cancel.is_set():
                return
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            usage.completion_tokens += 1
            yield orjson.dumps(
                {
                    "object": "chat.completion.chunk",
                    "model": self.info.name,
                    "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
                }
            )
