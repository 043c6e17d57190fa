"""OpenAI-compatible upstream backend (vLLM, llama-server, Ollama, TGI, llama-cpp-python's server).

What goes out is an allow-list: the OpenAI fields of each endpoint (messages reduced to their OpenAI
keys), with the model name rewritten; vendor extensions a client adds are dropped, so a client cannot
steer an upstream through fields the gateway never checked. What comes back is bounded: redirects are
never followed (a 307 would re-post the prompt to wherever the upstream points), and an answer larger
than the model's ``max_response_bytes`` (a whole body, or a whole stream) is a 502. A background task
checks the upstream's ``/models`` every ``health_interval_s`` seconds (each check bounded by
``health_timeout_s``); while it fails, the router tries the route's other deployments first, and each
refused check is told to ``on_health`` (the gateway counts it against the deployment's circuit breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bastion.config import ModelSettings
from bastion.errors import (
    BackendUnavailable,
    BadGateway,
    BastionError,
    NotFound,
    UpstreamRateLimited,
    UpstreamTimedOut,
    UsageError,
)
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

if TYPE_CHECKING:
    from bastion.registry import ServedWeights

log = logging.getLogger("bastion.serve")
PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
}
_SAMPLING = frozenset(
    {
        "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    }
)
#: request fields forwarded upstream, per endpoint ("user" is not: it identifies a person to a third party)
FORWARDED: dict[Endpoint, frozenset[str]] = {
    "chat": _SAMPLING
    | {
        "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
        "parallel_tool_calls",
    },
    "completion": _SAMPLING | {"prompt", "echo", "suffix"},
    "embedding": frozenset({"model", "input", "encoding_format", "dimensions"}),
}
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
ERROR_BODY_BYTES = 65_536  # enough for any upstream's error message; the rest is not read


def _retry_after_s(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date or nothing counts as 60 s)."""
    try:
        return max(0.0, float(value)) if value is not None else 60.0
    except ValueError:
        return 60.0


def upstream_host(url: str) -> str:
    """The host name of an upstream URL (what the egress guard must allow)."""
    return urlsplit(url).hostname or ""


class UpstreamBackend:
    """Forward requests to an OpenAI-compatible server over HTTP."""

    def __init__(self, settings: ModelSettings) -> None:
        assert settings.url is not None
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.info = BackendInfo(
            settings.name,
            "openai",
            None,
            frozenset(PATHS),
            {"url": self.base, "upstream_model": settings.upstream_model or settings.name},
        )
        self._session: aiohttp.ClientSession | None = None
        self._healthy = False
        self._health_task: asyncio.Task[None] | None = None
        #: told the outcome of each periodic health check that did not just time out (the gateway
        #: feeds the circuit breaker with it)
        self.on_health: Callable[[bool], None] | None = None
        #: whether the last failed health check was refused (unreachable, an error status), not slow
        self.refusing = False
        self._headers = {"Content-Type": "application/json"}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise BackendUnavailable(
                    f"model {settings.name!r}: environment variable {settings.api_key_env} is not set",
                    hint="Export the upstream's API key in that variable before starting the gateway.",
                )
            self._headers["Authorization"] = f"Bearer {key}"

    async def start(self, weights: ServedWeights | None = None) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=self.settings.timeout_s,
                connect=self.settings.connect_timeout_s,
                sock_read=self.settings.first_byte_timeout_s,
            ),
            headers=self._headers,
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop(), name=f"health-{self.settings.name}")

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def healthy(self) -> bool:
        return self._healthy

    async def check_health(self) -> bool:
        """Ask the upstream for its model list; remember whether it answered."""
        assert self._session is not None
        self.refusing = True
        try:
            async with self._session.get(
                self.base + "/models",
                timeout=aiohttp.ClientTimeout(total=self.settings.health_timeout_s),
                allow_redirects=False,
            ) as r:
                ok = r.status == 200
        except TimeoutError as exc:
            # An upstream busy generating may be slow to list its models: no evidence that it is down.
            log.debug("health check of %s timed out: %r", self.base, exc)
            ok = self.refusing = False
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("health check of %s failed: %r", self.base, exc)
            ok = False
        if ok != self._healthy:
            log.log(
                logging.INFO if ok else logging.WARNING, "upstream %s %s", self.base, "up" if ok else "DOWN"
            )
        self._healthy = ok
        return ok

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            ok = await self.check_health()
            if self.on_health is not None and (ok or self.refusing):
                self.on_health(ok)  # a refusal (unreachable, an error status) counts; a slow answer not

    def _payload(self, endpoint: Endpoint, body: dict[str, Any]) -> bytes:
        """The request as sent upstream: allow-listed fields only, the upstream's model name."""
        allowed = FORWARDED[endpoint]
        out = {k: v for k, v in body.items() if k in allowed}
        if isinstance(out.get("messages"), list):
            out["messages"] = [
                {k: v for k, v in m.items() if k in MESSAGE_FIELDS} if isinstance(m, dict) else m
                for m in out["messages"]
            ]
        out["model"] = self.settings.upstream_model or self.settings.name
        if out.get("stream"):
            # Quotas need what the stream cost; without this the prompt of a stream was never charged.
            out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(out)

    def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> Any:
        session = self._require_session()
        # Never follow a redirect: it would re-send the prompt to a host nobody configured.
        url = self.base + PATHS[endpoint]
        return session.post(url, data=self._payload(endpoint, body), allow_redirects=False)

    def _too_large(self, what: str) -> BadGateway:
        cap = self.settings.max_response_bytes
        return BadGateway(
            f"upstream for model {self.settings.name!r} sent {what} larger than {cap} bytes; it was cut off",
            hint="Raise the model's max_response_bytes if such answers are expected, or lower max_tokens.",
        )

    async def _read_capped(self, r: aiohttp.ClientResponse) -> bytes:
        """The whole (decompressed) body, refused as soon as it exceeds max_response_bytes."""
        cap = self.settings.max_response_bytes
        if r.content_length is not None and r.content_length > cap:
            raise self._too_large("an answer")
        data = bytearray()
        async for piece in r.content.iter_chunked(65_536):
            data += piece
            if len(data) > cap:
                raise self._too_large("an answer")
        return bytes(data)

    async def _sse_lines(self, r: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The stream's lines, with the whole stream (and so any one line) bounded by max_response_bytes."""
        cap, total = self.settings.max_response_bytes, 0
        buf = bytearray()
        async for piece in r.content.iter_any():
            total += len(piece)
            if total > cap:
                raise self._too_large("a stream")
            start = len(buf)
            buf += piece
            cut = buf.rfind(b"\n", start)
            if cut < 0:
                continue
            lines = bytes(buf[: cut + 1]).splitlines()
            del buf[: cut + 1]
            for line in lines:
                yield line
        if buf:
            yield bytes(buf)

    def _failure(self, status: int, raw: bytes, retry_after: str | None = None) -> BastionError:
        """Map an upstream error status onto our hierarchy, keeping the upstream's message."""
        try:
            message = orjson.loads(raw)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw[:200].decode("utf-8", "replace")
        text = f"upstream for model {self.settings.name!r} answered {status}: {message}"
        if 300 <= status < 400:
            return BadGateway(
                f"upstream for model {self.settings.name!r} answered a redirect ({status}); redirects are"
                " never followed, so the request was not re-sent",
                hint="Point the model's url at the final address of the upstream.",
            )
        if status == 429:
            # Respected, not retried: the deployment is skipped for that long (its circuit opens) and
            # the request goes to the next candidate of the route.
            return UpstreamRateLimited(text, _retry_after_s(retry_after))
        if status == 404:
            return NotFound(text, hint="Check upstream_model in the configuration.")
        if 400 <= status < 500:
            return UsageError(text)
        return BackendUnavailable(text)

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        try:
            async with self._post(endpoint, body) as r:
                if r.status != 200:
                    raise self._failure(
                        r.status, await r.content.read(ERROR_BODY_BYTES), r.headers.get("retry-after")
                    )
                self._expect_type(r, "application/json")
                raw = await self._read_capped(r)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadGateway(f"upstream for model {self.settings.name!r} sent invalid JSON") from exc
        self._expect_answer(endpoint, parsed)
        usage = Usage(reported=False)
        self._count(parsed, usage)
        return Reply(orjson.dumps(self._relabel(parsed)), usage)

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        try:
            async with self._post(endpoint, body) as r:
                if r.status != 200:
                    raise self._failure(
                        r.status, await r.content.read(ERROR_BODY_BYTES), r.headers.get("retry-after")
                    )
                self._expect_type(r, "text/event-stream")
                usage.reported = False  # until the upstream's usage event arrives
                wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                done = False
                unfinished: set[int] = set()  # choices begun and not yet given a finish_reason
                finished = False
                async for line in self._sse_lines(r):
                    if cancel.is_set():
                        return  # leaving the context closes the upstream connection: it stops too
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = finished and not unfinished
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise BadGateway(
                            f"upstream for model {self.settings.name!r} sent a stream event that is not JSON"
                        ) from exc
                    self._expect_answer(endpoint, chunk)
                    self._count(chunk, usage)
                    for choice in chunk["choices"]:
                        index = choice.get("index", 0) if isinstance(choice, dict) else 0
                        if isinstance(choice, dict) and choice.get("finish_reason"):
                            unfinished.discard(index)
                            finished = True
                        else:
                            unfinished.add(index)
                    if not chunk["choices"] and "usage" in chunk and not wants_usage:
                        continue  # the usage event we asked for on our own account, not the client's
                    yield orjson.dumps(self._relabel(chunk))
                if not done and not cancel.is_set():
                    # A stream that stops without [DONE] was cut off: the client must not take the
                    # text so far for a whole answer. So was one that says [DONE] before every choice
                    # it began has a finish_reason: llama_cpp.server, interrupted by a newer request,
                    # ends the older stream with [DONE] and nothing else.
                    raise BadGateway(
                        f"upstream for model {self.settings.name!r} ended the stream early"
                        " (no [DONE], or [DONE] before a finish_reason)"
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc

    def _relabel(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The answer under our model name, without the upstream's ``system_fingerprint``.

        Local answers carry the digest of the verified bytes there; an upstream could put an admitted
        model's digest in it and pass for that model (red team, wave 2). Only we label answers.
        """
        doc["model"] = self.settings.name
        doc.pop("system_fingerprint", None)
        return doc

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        """A transport failure, told to the client without the upstream's address (it is in the log).

        aiohttp's exceptions name the host and port it tried; a key holder has no business learning
        where the organisation's upstreams live (red team, wave 2).
        """
        self._healthy = False
        log.warning("upstream for model %s (%s) failed: %r", self.settings.name, self.base, exc)
        timed_out = isinstance(exc, TimeoutError)
        kind = UpstreamTimedOut if timed_out else BackendUnavailable
        what = "timed out" if timed_out else "could not be reached"
        return kind(
            f"upstream for model {self.settings.name!r} {what}",
            hint="The gateway log names the failure; try again later or use another model.",
        )

    def _expect_type(self, r: aiohttp.ClientResponse, expected: str) -> None:
        if r.content_type != expected:
            raise BadGateway(
                f"upstream for model {self.settings.name!r} answered {r.content_type or 'no content type'},"
                f" not {expected}"
            )

    def _expect_answer(self, endpoint: Endpoint, doc: Any) -> None:
        """Refuse what is not an answer of this endpoint, or an answer for another model."""
        key = "data" if endpoint == "embedding" else "choices"
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            raise BadGateway(f"upstream for model {self.settings.name!r} sent JSON that is not an answer")
        expected = self.settings.upstream_model or self.settings.name
        named = doc.get("model")
        # A provider may name a dated version of the model asked for (gpt-4o -> gpt-4o-2024-08-06).
        if self.settings.check_model_name and isinstance(named, str) and not named.startswith(expected):
            raise BadGateway(
                f"upstream for model {self.settings.name!r} answered as model {named!r}, not {expected!r}",
                hint="If the upstream names its models differently (e.g. an Azure deployment), set"
                " check_model_name = false for this model.",
            )

    def _count(self, doc: dict[str, Any], usage: Usage) -> None:
        """Take the usage an answer (or stream event) reports; count streamed content meanwhile.

        Usage is checked, not believed: an upstream that reported negative tokens refilled every budget
        the request counted against, and one that reported a list made the gateway answer 500 (red
        team, wave 2). Only non-negative integers count; anything else is a 502. An answer without
        usage leaves ``usage.reported`` False, so quotas charge the whole reservation.
        """
        reported = doc.get("usage")
        if reported is None:
            for choice in doc.get("choices") or ():
                if isinstance(choice, dict) and (
                    choice.get("text") or (choice.get("delta") or {}).get("content")
                ):
                    usage.completion_tokens += 1
            return
        counts = []
        for field in ("prompt_tokens", "completion_tokens"):
            value = reported.get(field, 0) if isinstance(reported, dict) else None
            if value is None and isinstance(reported, dict):
                value = 0
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
                raise BadGateway(
                    f"upstream for model {self.settings.name!r} reported usage that is not a count of"
                    f" tokens: {orjson.dumps(reported)[:120].decode('utf-8', 'replace')}"
                )
            counts.append(value)
        usage.prompt_tokens, usage.completion_tokens = counts
        usage.reported = True

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendUnavailable(f"upstream for model {self.settings.name!r} is not started")
        return self._session
