"""What a client must see for each upstream fault, and the one judge of what it did see.

The scenarios are ``SCENARIOS`` of :mod:`tests.serve.fault_server`. This module is shared by
tests/adversarial/test_upstream_faults.py (Bastion, falling back to the local SmolLM2) and
bench/fault_suite.py (Bastion and the LiteLLM proxy side by side, falling back to a healthy upstream),
so both score a gateway by the same criterion:

- ``ok``: the upstream's own answer, as a JSON chat completion.
- ``hang-keepalive``: a first request is answered on a connection the server keeps alive (the client
  sends it first, see :func:`run`); the judged second request meets that connection silent if the gateway
  reuses it. It must get an answer all the same: the fallback's, or the upstream's on a fresh connection.
- a fault before the first byte: a JSON chat completion (status 200) that is *not* the faulty upstream's
  answer; when the fallback's text is known (the bench), it must be the fallback's. A redirect must not
  have been followed.
- a fault after the first byte (``STREAMED``): the client must be able to tell the answer is incomplete:
  an error status, an SSE error event with no ``[DONE]``, or a connection cut before the end of the
  chunked body. A stream that ends cleanly (``[DONE]``, or simply the end of the body) after the cut is a
  FAIL: a truncated answer reported as a finished one. A whole answer from a known fallback (and nothing else) also passes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tests.serve.fault_server import SCENARIOS, STREAMED, UPSTREAM_TEXT

#: the request every scenario sends
ASK = [{"role": "user", "content": "Say fine."}]
#: per-attempt limits both gateways are configured with (bench) or Bastion is (test)
TIMEOUT_S = 4.0
FIRST_BYTE_TIMEOUT_S = 2.0
MAX_RESPONSE_BYTES = 1_000_000
#: how long a client waits for a gateway before it counts as no answer
CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Observed:
    """What the client saw: status (None if no response), body text, and a transport error if any."""

    status: int | None
    text: str
    seconds: float
    error: str = ""
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Verdict:
    """One scenario's score and the reason, for the table."""

    scenario: str
    passed: bool
    why: str
    seconds: float


def observe(base: str, key: str, model: str, stream: bool) -> Observed:
    """Send the scenario's request to a gateway at ``base`` (``.../v1``) and record what came back."""
    body = {"model": model, "messages": ASK, "max_tokens": 4, "temperature": 0, "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    parts: list[str] = []
    status: int | None = None
    seen: dict[str, str] | None = None
    try:
        with httpx.stream("POST", base + "/chat/completions", headers=headers, json=body,
                          timeout=CLIENT_TIMEOUT_S) as r:
            status, seen = r.status_code, dict(r.headers)
            for piece in r.iter_text():
                parts.append(piece)
                if time.monotonic() - started > CLIENT_TIMEOUT_S:
                    return Observed(status, "".join(parts), time.monotonic() - started, "client gave up", seen)
    except httpx.HTTPError as exc:
        return Observed(status, "".join(parts), time.monotonic() - started, f"{type(exc).__name__}: {exc}", seen)
    return Observed(status, "".join(parts), time.monotonic() - started, "", seen)


def run(base: str, key: str, scenario: str) -> Observed:
    """What a client sees for ``scenario``: the request :func:`observe` sends (streamed for the faults
    after the first byte), after a first answered request for ``hang-keepalive``."""
    if scenario == "hang-keepalive":
        observe(base, key, scenario, stream=False)  # answered; leaves a kept-alive connection in the pool
    return observe(base, key, scenario, stream=scenario in STREAMED)


def _content(text: str) -> str | None:
    """The first choice's message content of a JSON chat completion, or None if it is not one."""
    try:
        doc = orjson.loads(text)
        content = doc["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) and content else None


def _events(text: str) -> tuple[list[Any], bool, bool]:
    """The SSE data events (parsed where JSON), whether ``[DONE]`` came, whether an error event came."""
    events: list[Any] = []
    done = error = False
    for line in text.splitlines():
        if line.startswith("event:") and "error" in line:
            error = True
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        events.append(event)
        error = error or (isinstance(event, dict) and "error" in event)
    return events, done, error


def _streamed_text(events: list[Any]) -> str:
    out = []
    for event in events:
        for choice in (event.get("choices") or []) if isinstance(event, dict) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                out.append(delta["content"])
    return "".join(out)


def judge(scenario: str, seen: Observed, received: dict[str, int], fallback_text: str | None = None) -> Verdict:
    """Score what the client saw for ``scenario`` (see the module docstring for the criterion).

    ``received``: requests per scenario path at the fault server (a followed redirect shows as
    ``steal``, a request left hanging on a kept-alive connection as ``hung``). ``fallback_text``: the
    fallback's answer, when it is a known upstream (None: a local model whose words are not known in
    advance).
    """
    assert scenario in SCENARIOS, scenario

    def verdict(passed: bool, why: str) -> Verdict:
        return Verdict(scenario, passed, why, round(seen.seconds, 2))

    if scenario in STREAMED:
        if seen.status is not None and seen.status >= 400:
            return verdict(True, f"error status {seen.status}")
        if seen.status is None:
            return verdict(False, f"no response: {seen.error}")
        events, done, error = _events(seen.text)
        said = _streamed_text(events)
        if error and not done:
            return verdict(True, "SSE error event, no [DONE]")
        if seen.error and not done:
            return verdict(True, f"connection cut before the end of the body ({seen.error.split(':')[0]})")
        if done and not error and fallback_text is not None and said == fallback_text:
            return verdict(True, "whole answer from the fallback")
        if done:
            return verdict(False, f"truncated stream ended with [DONE] (clean finish): {said!r}")
        return verdict(False, f"truncated stream ended without an error (clean end of body): {said!r}")
    if seen.status != 200:
        return verdict(False, f"status {seen.status}: {(seen.error or seen.text)[:120]!r}")
    content = _content(seen.text)
    if content is None:
        return verdict(False, f"200 but not a chat completion: {seen.text[:80]!r}")
    if scenario == "ok":
        ok = content == UPSTREAM_TEXT
        return verdict(ok, "the upstream's answer" if ok else f"not the upstream's answer: {content[:60]!r}")
    if received.get("steal"):
        return verdict(False, "followed the redirect (the request was re-sent to its target)")
    if scenario == "hang-keepalive" and content == UPSTREAM_TEXT:
        if received.get("hung"):
            return verdict(True, "kept-alive connection hung; the upstream answered on a fresh one")
        return verdict(True, "upstream answered (the kept-alive connection was not reused: fault not met)")
    if content == UPSTREAM_TEXT:
        return verdict(False, "passed the faulty upstream's answer through")
    if fallback_text is not None and content != fallback_text:
        return verdict(False, f"200 with an answer from neither: {content[:60]!r}")
    if scenario == "hang-keepalive":
        met = "kept-alive connection hung" if received.get("hung") else "connection not reused"
        return verdict(True, f"fallback answered ({met})")
    return verdict(True, "fallback answered")
