"""Concurrent clients for replicas: each request's outcome, judged the way a careful client would.

Used by the kill test (tests/serve/test_replicas_kill.py) and the load bench (bench/scale.py). Client
``i`` starts on replica ``i mod n`` (round-robin, no balancer in front) and keeps its connection; when
a replica cannot be reached it moves to the next one, as a load balancer's retry would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson


@dataclass
class Outcome:
    """One request as the client saw it. ``complete``: a 200 and a whole answer (for a stream, an event
    with a ``finish_reason`` and then ``[DONE]``, and no error event)."""

    request_id: str | None
    replica: int
    stream: bool
    status: int  # 0: no HTTP response (connection refused or cut before the headers)
    complete: bool
    chunks: int  # content events (streams) received
    started: float  # time.monotonic() when the request was sent
    first_byte_s: float | None  # until the first event (stream) or the headers (otherwise)
    total_s: float
    error: str = ""


async def ask(session: aiohttp.ClientSession, base: str, replica: int, model: str, stream: bool) -> Outcome:
    """Send one chat completion to ``base`` and read the whole answer."""
    body = {"model": model, "messages": [{"role": "user", "content": "Count to ten."}], "max_tokens": 16,
            "stream": stream}
    t0 = time.monotonic()
    rid: str | None = None
    status, chunks, first, complete, error = 0, 0, None, False, ""
    try:
        async with session.post(base + "/v1/chat/completions", json=body) as r:
            status, rid = r.status, r.headers.get("x-request-id")
            if not stream:
                doc = orjson.loads(await r.read())
                first = time.monotonic() - t0
                choices = doc.get("choices") if isinstance(doc, dict) else None
                complete = status == 200 and bool(choices) and bool(choices[0].get("finish_reason"))
                error = "" if complete else _message(doc)
            else:
                finished = done = False
                async for line in r.content:
                    if not line.startswith(b"data:"):
                        continue
                    first = first if first is not None else time.monotonic() - t0
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        continue
                    event = orjson.loads(data)
                    if "error" in event:
                        error = _message(event)
                        continue
                    for choice in event.get("choices") or ():
                        chunks += bool((choice.get("delta") or {}).get("content"))
                        finished = finished or bool(choice.get("finish_reason"))
                complete = status == 200 and finished and done and not error
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: bad JSON, long line
        error = f"{type(exc).__name__}: {exc}"[:200]
    return Outcome(rid, replica, stream, status, complete, chunks, t0, first, time.monotonic() - t0, error)


def _message(doc: object) -> str:
    """The message of an error envelope (or the document itself), shortened."""
    err = doc.get("error", doc) if isinstance(doc, dict) else doc
    return str(err.get("message", err) if isinstance(err, dict) else err)[:200]


async def load(
    bases: list[str],
    headers: dict[str, str],
    clients: int,
    until: asyncio.Event,
    model: str = "mock",
    stream_every: int = 1,
) -> list[Outcome]:
    """Run ``clients`` concurrent clients until ``until`` is set; every request's outcome.

    Every ``stream_every``-th request of a client streams (1: all of them).
    """
    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:

        async def client(i: int) -> None:
            replica, n = i % len(bases), i
            while not until.is_set():
                seen = await ask(session, bases[replica], replica, model, stream=n % stream_every == 0)
                outcomes.append(seen)
                n += 1
                if seen.status == 0:  # unreachable: the next replica, after a pause (no busy loop)
                    replica = (replica + 1) % len(bases)
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return outcomes
