"""Bounds on what a client may make the gateway hold before its request even reaches the app.

uvicorn's httptools protocol (llhttp) sets no limit on the request line and headers: httptools keeps a
header name and value in memory until it is complete, so 20 connections each sending a 10 MB header
that never ends grew the gateway by 267 MB, and a client that sends one byte every few seconds holds a
connection forever (the keep-alive timer is reset by every byte). :func:`limited_protocol` returns the
httptools protocol with three bounds, checked per connection and per request:

* ``max_header_bytes``: bytes received while a request's head (request line + headers) is incomplete.
  Counted as they arrive, before any callback could see a complete header, so memory per connection
  stays below the bound plus one socket read (256 KiB). Above it: ``431`` and the connection is closed.
* ``max_headers``: number of header fields (``431``).
* ``header_timeout_s``: time from a head's first byte to its end (``408``; slow-loris clients).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("bastion.serve")


@dataclass(frozen=True)
class HeadLimits:
    """The bounds on one request's head."""

    max_header_bytes: int
    max_headers: int
    header_timeout_s: float


class _HeadRefused(Exception):
    """Raised inside an httptools callback to stop parsing a head over the limits."""


def _response(status: int, reason: str, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response in the gateway's error envelope, closing the connection."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body = orjson.dumps({"error": error})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def limited_protocol(limits: HeadLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` on every request head (pass it as ``http=``)."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # a connection starts by waiting for a head
            self._head_bytes = 0
            self._head_fields = 0
            self._heads_done = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._refusal: bytes | None = None

        def data_received(self, data: bytes) -> None:
            was_in_head, heads_done = self._in_head, self._heads_done
            if was_in_head and self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timed_out)
            super().data_received(data)
            same_head = was_in_head and self._in_head and self._heads_done == heads_done
            if same_head and not self.transport.is_closing():
                # The whole read belongs to one unfinished head: httptools is holding all of it. (A read
                # in which a request ended and the next head began is not counted: it may be mostly body,
                # and leaving it out lets a head grow by at most one read past the bound.)
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_header_bytes:
                    self._refuse(
                        431,
                        "Request Header Fields Too Large",
                        f"request line and headers exceed {limits.max_header_bytes} bytes",
                    )

        def on_message_begin(self) -> None:
            self._head_fields = 0
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_fields += 1
            if self._head_fields > limits.max_headers:
                self._refusal = _response(
                    431,
                    "Request Header Fields Too Large",
                    f"more than {limits.max_headers} header fields",
                    "headers_too_large",
                )
                raise _HeadRefused  # httptools turns it into a parser error: uvicorn stops parsing
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._heads_done += 1
            self._end_head()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0  # what follows is the next request's head

        def send_400_response(self, msg: str) -> None:
            if self._refusal is None:
                super().send_400_response(msg)
                return
            log.warning("refused a request head from %s: too many header fields", self.client)
            self._close_with(self._refusal)

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_head()
            super().connection_lost(exc)

        def _end_head(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                message = f"request head not received in {limits.header_timeout_s} s"
                self._refuse(408, "Request Timeout", message)

        def _refuse(self, status: int, reason: str, message: str) -> None:
            log.warning("refused a request head from %s: %s", self.client, message)
            code = "headers_too_large" if status == 431 else "header_timeout"
            self._close_with(_response(status, reason, message, code))

        def _close_with(self, response: bytes) -> None:
            self._end_head()
            self.transport.write(response)
            self.transport.close()

    return LimitedHttpToolsProtocol
