"""OpenAI-compatible upstream backend (vLLM, llama-server, Ollama, TGI, llama-cpp-python's server).

Bodies are passed through as bytes with only the model name rewritten, so the gateway adds parsing
work proportional to the request, not to the upstream's response. A background task checks the
upstream's ``/models`` every ``HEALTH_INTERVAL_S`` seconds; while it fails, the router sends requests
to the model's fallbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, Busy, NotFound, UsageError
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

log = logging.getLogger("bastion.serve")
HEALTH_INTERVAL_S = 5.0
PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
}


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
        self._headers = {"Content-Type": "application/json"}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise BackendUnavailable(
                    f"model {settings.name!r}: environment variable {settings.api_key_env} is not set",
                    hint="Export the upstream's API key in that variable before starting the gateway.",
                )
            self._headers["Authorization"] = f"Bearer {key}"

    async def start(self) -> None:
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
        try:
            async with self._session.get(self.base + "/models", timeout=aiohttp.ClientTimeout(total=10)) as r:
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
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
            await asyncio.sleep(HEALTH_INTERVAL_S)
            await self.check_health()

    def _payload(self, body: dict[str, Any]) -> bytes:
        out = dict(body)
        out["model"] = self.settings.upstream_model or self.settings.name
        return orjson.dumps(out)

    def _failure(self, status: int, raw: bytes) -> BastionError:
        """Map an upstream error status onto our hierarchy, keeping the upstream's message."""
        try:
            message = orjson.loads(raw)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = raw[:200].decode("utf-8", "replace")
        text = f"upstream for model {self.settings.name!r} answered {status}: {message}"
        if status == 429:
            return Busy(text)
        if status == 404:
            return NotFound(text, hint="Check upstream_model in the configuration.")
        if 400 <= status < 500:
            return UsageError(text)
        return BackendUnavailable(text)

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        session = self._require_session()
        try:
            async with session.post(self.base + PATHS[endpoint], data=self._payload(body)) as r:
                raw = await r.read()
                if r.status != 200:
                    raise self._failure(r.status, raw)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._healthy = False
            raise BackendUnavailable(f"upstream for model {self.settings.name!r} failed: {exc!r}") from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackendUnavailable(f"upstream for model {self.settings.name!r} sent invalid JSON") from exc
        usage = parsed.get("usage") or {}
        parsed["model"] = self.settings.name
        return Reply(
            orjson.dumps(parsed),
            Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0),
        )

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        session = self._require_session()
        try:
            async with session.post(self.base + PATHS[endpoint], data=self._payload(body)) as r:
                if r.status != 200:
                    raise self._failure(r.status, await r.read())
                async for line in r.content:
                    if cancel.is_set():
                        break  # leaving the context closes the upstream connection: it stops too
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        continue
                    self._count(chunk, usage)
                    chunk["model"] = self.settings.name
                    yield orjson.dumps(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._healthy = False
            raise BackendUnavailable(f"upstream for model {self.settings.name!r} failed: {exc!r}") from exc

    @staticmethod
    def _count(chunk: dict[str, Any], usage: Usage) -> None:
        if chunk.get("usage"):
            usage.prompt_tokens = chunk["usage"].get("prompt_tokens") or usage.prompt_tokens
            usage.completion_tokens = chunk["usage"].get("completion_tokens") or usage.completion_tokens
            return
        for choice in chunk.get("choices") or ():
            if choice.get("text") or (choice.get("delta") or {}).get("content"):
                usage.completion_tokens += 1

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendUnavailable(f"upstream for model {self.settings.name!r} is not started")
        return self._session
