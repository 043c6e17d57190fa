"""A well-behaved OpenAI-compatible upstream on 127.0.0.1 that streams at a model's pace.

A stand-in for a remote model server when what is measured or tested is the gateway, not a model: a
stream is ``chunks`` content events ``gap_s`` apart, a last event with ``finish_reason = "stop"``, the
usage event when asked for (the gateway always asks), then ``data: [DONE]``; a non-streaming request
gets one chat completion. Connections are kept alive (chunked transfer encoding), as a real server's.
``tests/serve/fault_server.py`` is the broken upstream; this one never fails, so every error a client
sees comes from the gateway.

Run on its own for the load bench (``python tests/serve/sse_upstream.py PORT [CHUNKS] [GAP_MS]``), or
in a thread with :func:`sse_upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Iterator

MODEL = "up"
WORD = "tok "


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)  # one HTTP chunk per event


def _event(doc: dict[str, object]) -> bytes:
    return _frame(b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n")


def _chunk(delta: dict[str, str], finish: str | None) -> bytes:
    return _event({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}


class SSEUpstream:
    """The server on its own event loop (in a thread, or the main one); ``requests`` counts answers."""

    def __init__(self, port: int = 0, chunks: int = 8, gap_s: float = 0.02) -> None:
        self.port = port
        self.chunks = chunks
        self.gap_s = gap_s
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.run, daemon=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> SSEUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the SSE upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def run(self) -> None:
        """Serve until the loop is stopped (in the calling thread)."""
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=4096))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                if path.endswith("/models"):
                    self._whole(writer, b'{"object":"list","data":[{"id":"up","object":"model"}]}')
                elif json.loads(raw or b"{}").get("stream"):
                    await self._stream(writer, json.loads(raw))
                else:
                    self.requests += 1
                    text = WORD * self.chunks
                    self._whole(writer, json.dumps({
                        "id": "up-1", "object": "chat.completion", "created": 0, "model": MODEL,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": _usage(self.chunks)}).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    def _whole(writer: asyncio.StreamWriter, body: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))

    async def _stream(self, writer: asyncio.StreamWriter, body: dict[str, object]) -> None:
        self.requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\n\r\n" + _chunk({"role": "assistant", "content": ""}, None))
        for _ in range(self.chunks):
            await asyncio.sleep(self.gap_s)  # a model producing a token every gap_s
            writer.write(_chunk({"content": WORD}, None))
            await writer.drain()
        tail = _chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):  # type: ignore[union-attr]
            tail += _event({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                            "choices": [], "usage": _usage(self.chunks)})
        writer.write(tail + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def model_table(url: str, name: str = "mock") -> str:
    """The ``[[models]]`` table of a gateway model answered by this upstream at ``url``."""
    return f'\n[[models]]\nname = "{name}"\nbackend = "openai"\nurl = "{url}"\nupstream_model = "{MODEL}"\n'


@contextlib.contextmanager
def sse_upstream(chunks: int = 8, gap_s: float = 0.02) -> Iterator[SSEUpstream]:
    """A running upstream on a free port, in a thread of this process."""
    with SSEUpstream(0, chunks, gap_s) as server:
        yield server


if __name__ == "__main__":
    args = [*sys.argv[1:], "", ""]
    SSEUpstream(int(args[0]), int(args[1] or 8), float(args[2] or 20) / 1000).run()  # until killed
