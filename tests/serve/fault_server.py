"""A fault-injecting OpenAI-compatible upstream on 127.0.0.1, written at the socket level.

The first path segment names the fault: ``http://127.0.0.1:PORT/<scenario>/v1/chat/completions``. Being
below HTTP libraries lets it do what real broken upstreams do: never send headers, reset a connection
mid-stream, stop a stream without ``[DONE]`` (or with it, but before a finish_reason), hang on a kept-alive connection. ``/v1/models`` answers
normally for every scenario, so health checks pass and the fault is met by real requests.

Run on its own (``python tests/serve/fault_server.py PORT``) for the bench against other gateways. The
outcome each scenario must have, and how a client's observation is judged against it, are in
``tests/serve/fault_outcomes.py`` (shared by tests/adversarial/test_upstream_faults.py and
bench/fault_suite.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

#: every scenario and the outcome a client of a gateway with a healthy fallback must see
SCENARIOS: dict[str, str] = {
    "ok": "answer from the upstream",
    "refused": "fallback answers (connection refused)",
    "no-headers": "fallback answers (timeout before headers)",
    "slow-first-byte": "fallback answers (first byte too late)",
    "http-500": "fallback answers",
    "http-502": "fallback answers",
    "http-503": "fallback answers",
    "http-429": "fallback answers (Retry-After longer than the request may wait)",
    "reset-mid-stream": "stream ends with an error event, never a clean finish",
    "sse-truncated": "stream ends with an error event, never a clean finish",
    "sse-done-early": "stream ends with an error event, never a clean finish ([DONE] before any finish_reason,"
                      " as llama_cpp.server ends a stream a newer request interrupted)",
    "malformed-json": "fallback answers (a 200 whose body is not JSON is not an answer)",
    "wrong-content-type": "fallback answers (HTML is not an answer)",
    "oversized": "fallback answers (body over the cap)",
    "redirect": "fallback answers (redirect not followed, nothing re-sent)",
    "wrong-model": "fallback answers (an answer for another model is not this model's)",
    "hang-keepalive": "an answer (fallback, or the upstream on a fresh connection) when a kept-alive connection"
                      " that answered once goes silent",
    "dns-failure": "fallback answers (name does not resolve)",
}
#: upstreams that answer, but whose answers test what the gateway believes of them (tests/adversarial/
#: test_redteam_*.py): not part of the fallback suite above
ANSWERING: dict[str, str] = {
    "honest": "a vLLM-like upstream: max_completion_tokens wins over max_tokens, every request byte is"
              " prompt (tools included), usage reported (in a stream only with include_usage)",
    "negative-usage": "reports negative token usage",
    "no-usage": "answers without any usage",
    "bad-usage": "reports usage that is not a mapping of integers",
    "impostor": "labels its answers with the admitted SmolLM2's digest as system_fingerprint",
}
#: upstreams that fail every other request the way a retry is for, then answer (a retry at the same
#: deployment must hide the failure: the client gets this upstream's answer)
RETRIED: dict[str, str] = {
    "flaky-503": "every odd request is a 503, every even one an answer",
    "flaky-429": "every odd request is a 429 with Retry-After: 0, every even one an answer",
}
#: the digest of the bundled SmolLM2 GGUF, which the gateway reports for the admitted local model
SMOLLM2_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
STREAMED = {"reset-mid-stream", "sse-truncated", "sse-done-early"}
#: what the upstream answers when it does answer (``ok``, and the impostor of ``wrong-model``)
UPSTREAM_TEXT = "fine, from the faulty upstream"
#: a healthy upstream for the bench's fallbacks (``/fallback/v1``): an answer nobody else gives
FALLBACK = "fallback"
FALLBACK_TEXT = "fine, from the healthy fallback"
HANG_S = 3600.0


def _chunk(text: str, model: str = "up", extra: dict[str, str] | None = None) -> bytes:
    doc = {"id": "x", "object": "chat.completion.chunk", "model": model, **(extra or {}),
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def _finish(model: str = "up", reason: str = "stop") -> bytes:
    """The last chunk of a whole streamed answer: no text, a finish_reason."""
    doc = {"id": "x", "object": "chat.completion.chunk", "model": model,
           "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def _answer(model: str = "up", text: str = UPSTREAM_TEXT) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": model, "created": 0,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()


def _response(status: int, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n{extra}"
            "connection: keep-alive\r\n\r\n")
    return head.encode() + body


def _answering(scenario: str, raw: bytes) -> bytes:
    """One whole HTTP response of an ANSWERING scenario (a stream is sent at once and closed)."""
    body = json.loads(raw)
    n = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
    usage: object = {"prompt_tokens": max(1, len(raw) // 4), "completion_tokens": n,
                     "total_tokens": max(1, len(raw) // 4) + n}
    if scenario == "negative-usage":
        usage = {"prompt_tokens": -1_000_000, "completion_tokens": -1_000_000, "total_tokens": -2_000_000}
    elif scenario == "bad-usage":
        usage = ["lots"]
    model = body.get("model", "up")
    label = {"system_fingerprint": SMOLLM2_DIGEST} if scenario == "impostor" else {}
    if not body.get("stream"):
        doc = {"id": "x", "object": "chat.completion", "model": model, "created": 0, **label,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * n},
                            "finish_reason": "length"}]}
        if scenario != "no-usage":
            doc["usage"] = usage
        return _response(200, json.dumps(doc).encode())
    events = b"".join(_chunk("x ", model, label) for _ in range(n)) + _finish(model, "length")
    if scenario != "no-usage" and (body.get("stream_options") or {}).get("include_usage"):
        events += b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "model": model,
                                           "choices": [], "usage": usage}).encode() + b"\n\n"
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + events
            + b"data: [DONE]\n\n")


class FaultServer:
    """The server, run on its own event loop in a thread; ``received`` counts requests per scenario."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        #: requests per scenario path; "hung": requests left unanswered on a kept-alive connection that had
        #: answered before (``hang-keepalive``)
        self.received: dict[str, int] = {}
        #: request bodies received by the ANSWERING scenarios
        self.bodies: dict[str, list[bytes]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, scenario: str) -> str:
        """The base URL of ``scenario`` on this server (a closed port for ``refused``, an unresolvable
        name for ``dns-failure``)."""
        if scenario == "refused":
            with socket.socket() as s:  # a port nobody listens on once this socket is closed
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            return f"http://127.0.0.1:{port}/v1"
        if scenario == "dns-failure":
            return "http://upstream.invalid/v1"  # RFC 2606: never resolves
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                scenario = path.strip("/").split("/", 1)[0]
                if path.endswith("/models"):
                    writer.write(_response(200, b'{"object":"list","data":[{"id":"up","object":"model"}]}'))
                    await writer.drain()
                    continue
                self.received[scenario] = self.received.get(scenario, 0) + 1
                requests += 1
                stream = b'"stream":true' in body.replace(b" ", b"")
                if scenario in ANSWERING:
                    self.bodies.setdefault(scenario, []).append(body)
                    writer.write(_answering(scenario, body))
                    await writer.drain()
                    if stream:
                        return
                    continue
                if not await self._fault(scenario, stream, requests, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _fault(self, scenario: str, stream: bool, nth: int, writer: asyncio.StreamWriter) -> bool:
        """Answer one request the scenario's way; False when the connection must end."""
        if scenario in RETRIED and self.received[scenario] % 2 == 1:
            status, extra = (429, "retry-after: 0\r\n") if scenario == "flaky-429" else (503, "")
            writer.write(_response(status, b'{"error":{"message":"injected transient fault"}}', extra=extra))
            await writer.drain()
            return True
        if scenario == "hang-keepalive" and nth > 1:
            # the connection answered before and was kept alive; now it stays silent
            self.received["hung"] = self.received.get("hung", 0) + 1
        if scenario == "no-headers" or (scenario == "hang-keepalive" and nth > 1):
            await asyncio.sleep(HANG_S)
            return False
        if scenario == "slow-first-byte":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" if stream else b"")
            await writer.drain()
            await asyncio.sleep(HANG_S)
            return False
        if scenario.startswith("http-"):
            status = int(scenario[5:])
            extra = "retry-after: 30\r\n" if status == 429 else ""
            writer.write(_response(status, b'{"error":{"message":"injected fault"}}', extra=extra))
        elif scenario == "malformed-json":
            writer.write(_response(200, b'{"id": "x", "choices": [ {'))
        elif scenario == "wrong-content-type":
            writer.write(_response(200, b"<html>maintenance</html>", "text/html"))
        elif scenario == "oversized":
            writer.write(_response(200, b'{"pad":"' + b"x" * 64_000_000 + b'"}'))
        elif scenario == "redirect":
            # to this server, so that a gateway that follows it is counted in received["steal"]
            where = f"http://127.0.0.1:{self.port}/steal/v1/chat/completions"
            writer.write(_response(307, b"", extra=f"location: {where}\r\n"))
        elif scenario == "wrong-model":
            writer.write(_response(200, _answer("someone-else")))
        elif scenario in STREAMED:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n")
            for word in ("the ", "answer ", "is "):
                writer.write(_chunk(word))
                await writer.drain()
                await asyncio.sleep(0.05)
            if scenario == "sse-done-early":
                writer.write(b"data: [DONE]\n\n")
            if scenario == "reset-mid-stream":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            return False
        elif stream:
            text = FALLBACK_TEXT if scenario == FALLBACK else UPSTREAM_TEXT
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + _chunk(text)
                         + _finish() + b"data: [DONE]\n\n")
            return False
        else:
            writer.write(_response(200, _answer(text=FALLBACK_TEXT if scenario == FALLBACK else UPSTREAM_TEXT)))
        await writer.drain()
        return True


@contextlib.contextmanager
def fault_server() -> Iterator[FaultServer]:
    """A running fault server on a free port."""
    with FaultServer() as server:
        yield server


if __name__ == "__main__":
    with FaultServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as s:
        print(f"fault server on 127.0.0.1:{s.port}", flush=True)
        while True:
            time.sleep(3600)
