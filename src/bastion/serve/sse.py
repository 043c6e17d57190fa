"""Server-sent events: a streaming response that stops the backend as soon as the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bastion.errors import BastionError, internal_error
from bastion.serve.backends import Cancel
from bastion.serve.http_errors import sse_error

log = logging.getLogger("bastion.serve")

#: an open stream re-checks that it may go on (key not revoked, model still admitted) this often
RECHECK_S = 1.0


class rechecked:  # noqa: N801 - used like the generator function it replaces
    """``chunks``, calling ``check`` before a chunk once ``every_s`` has passed since the last call; it
    raises (a BastionError: the stream ends with that error event) when the stream may not go on.

    Revocation reached new requests within a second but never an open stream: a key holder expecting
    to be revoked opened long streams first and they ran to the end (red team 2). A class, not an async
    generator: closing it must close ``chunks`` even when it was never iterated (the backend's stream
    was already started for its first chunk).
    """

    def __init__(self, chunks: AsyncIterator[bytes], check: Callable[[], None], every_s: float = RECHECK_S):
        self._chunks = chunks
        self._check = check
        self._every_s = every_s
        self._due = time.monotonic() + every_s

    def __aiter__(self) -> rechecked:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        if time.monotonic() >= self._due:
            self._check()
            self._due = time.monotonic() + self._every_s
        return chunk

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


class SSE(Response):
    """A server-sent-events response that stops the backend as soon as the client goes away.

    Its audit entry (with the SHA-256 of every byte sent, and ``partial`` when cut off) is made
    durable before the final event, so a client that saw ``[DONE]`` can count on the record.
    """

    def __init__(
        self,
        first: bytes | None,
        chunks: AsyncIterator[bytes],
        cancel: Cancel,
        headers: dict[str, str],
        finish: Callable[[int, bool, str], Awaitable[None]],
    ) -> None:
        self.first = first
        self.chunks = chunks
        self.cancel = cancel
        self.extra_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = False
        sent = hashlib.sha256()

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            self.cancel.set()

        async def body(data: bytes, more: bool = True) -> None:
            sent.update(data)
            await send({"type": "http.response.body", "body": data, "more_body": more})

        watcher = asyncio.create_task(watch())
        status = 200
        finished = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        *self.extra_headers,
                    ],
                }
            )
            if self.first is not None:
                await body(b"data: " + self.first + b"\n\n")
            try:
                async for chunk in self.chunks:
                    if gone:
                        break
                    await body(b"data: " + chunk + b"\n\n")
            except BastionError as exc:
                status = exc.http_status
                await body(sse_error(exc))
            except Exception:  # noqa: BLE001 - never a silent clean finish: an error event, audited
                log.exception("stream failed")
                err = internal_error()
                status = err.http_status
                await body(sse_error(err))
            if gone:
                status = 499  # client closed the connection (nginx's convention)
            else:
                finished = True
                try:
                    await self.finish(status, status != 200, sent.hexdigest())
                except BastionError as exc:
                    await body(sse_error(exc), more=False)
                else:
                    # [DONE] only for a whole answer: after an error event the stream just ends, so no
                    # client can take a cut-off answer for a complete one.
                    await body(b"data: [DONE]\n\n" if status == 200 else b"", more=False)
        except OSError:
            status = 499
        finally:
            watcher.cancel()
            self.cancel.set()
            await self.chunks.aclose()  # type: ignore[attr-defined]
            if not finished:
                await self.finish(status, True, sent.hexdigest())


@contextlib.asynccontextmanager
async def watch_disconnect(request: Request, cancel: Cancel) -> AsyncIterator[None]:
    """While the body of the ``with`` runs, set ``cancel`` if the client disconnects."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()
