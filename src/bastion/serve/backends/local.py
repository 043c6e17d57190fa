"""What the embedded GGUF engines share: sealed weights, request translation, usage chunks.

Both engines (llama-cpp-python in :mod:`.llama_cpp`, llama.cpp's server loop in :mod:`.xllama`) load
only sealed bytes (:mod:`bastion.registry.sealed`) and take the same OpenAI fields, so a model answers
the same request the same way whichever engine is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from bastion import bundled
from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, Busy, UsageError
from bastion.registry import ServedWeights, seal_unverified
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

log = logging.getLogger("bastion.serve")


async def sealed_weights(
    settings: ModelSettings, weights: ServedWeights | None, run: Callable[..., Any]
) -> tuple[ServedWeights, Path]:
    """The verified weights handed in, or a sealed copy of the configured path; and that path.

    ``run(fn, *args)`` runs blocking work off the event loop (the engine's own executor).
    """
    path = bundled.resolve(settings.path or "")
    if weights is not None:
        return weights, path
    if not path.is_file():
        raise BackendUnavailable(
            f"model {settings.name!r}: GGUF file {path} does not exist",
            hint="Fix models.path in the configuration, or run 'make demo' to install bundled models.",
        )
    try:
        return await run(seal_unverified, path), path
    except BastionError as exc:
        raise BackendUnavailable(f"model {settings.name!r}: {exc.message}", hint=exc.hint) from exc


def check_endpoint(settings: ModelSettings, endpoints: frozenset[Endpoint], endpoint: Endpoint) -> None:
    """UsageError when this model cannot answer ``endpoint`` (a base model asked to chat)."""
    if endpoint in endpoints:
        return
    hint = (
        "This GGUF has no chat template: set chat_format for the model in the configuration,"
        " or use /v1/completions."
        if endpoint == "chat"
        else "Use a model whose backend supports this endpoint."
    )
    raise UsageError(f"model {settings.name!r} does not support {endpoint}", hint=hint, param="model")


def sampling(settings: ModelSettings, body: dict[str, Any]) -> dict[str, Any]:
    """The generation fields both engines take, with the same defaults (OpenAI's, not llama.cpp's)."""
    return {
        "max_tokens": min(
            body.get("max_tokens") or body.get("max_completion_tokens") or settings.default_max_tokens,
            settings.n_ctx,
        ),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "stop": body.get("stop") or [],
        "seed": body.get("seed"),
        "presence_penalty": body.get("presence_penalty") or 0.0,
        "frequency_penalty": body.get("frequency_penalty") or 0.0,
    }


def response_format(value: Any) -> dict[str, Any] | None:
    """Map OpenAI's ``response_format`` onto llama-cpp-python's grammar-constrained JSON modes."""
    if not value or value.get("type") == "text":
        return None
    if value["type"] == "json_object":
        return {"type": "json_object"}
    if value["type"] == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise UsageError("response_format.json_schema.schema must be an object", param="response_format")
        return {"type": "json_object", "schema": schema}
    raise UsageError(f"unsupported response_format type {value['type']!r}", param="response_format")


def prompt_of(body: dict[str, Any]) -> str:
    """A completion request's prompt: a string, or a list holding one string."""
    prompt = body["prompt"]
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise UsageError("prompt must be a string or a list of one string", param="prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise UsageError("prompt must be a string or a list of one string", param="prompt")
    return prompt


def usage_chunk(last_id: str, endpoint: Endpoint, usage: Usage) -> dict[str, Any]:
    """The closing chunk OpenAI sends when ``stream_options.include_usage`` is set."""
    return {
        "id": last_id,
        "object": "chat.completion.chunk" if endpoint == "chat" else "text_completion",
        "choices": [],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    }


def counts_as_token(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries generated text (one token per chunk for both engines)."""
    choices = chunk.get("choices") or [{}]
    choice = choices[0]
    return bool(choice.get("text") or (choice.get("delta") or {}).get("content"))


class Done:
    """Put on a stream's queue by the worker when generation ended; ``n_tokens`` if the engine knows."""

    def __init__(self, n_tokens: int | None = None) -> None:
        self.n_tokens = n_tokens


class EmbeddedBackend:
    """What both embedded engines do the same way: load sealed bytes, admit, label and relay answers.

    A subclass loads the engine in ``_load`` (returning whether the GGUF has a chat template), turns an
    engine chunk into ours in ``_chunk``, and runs requests on ``self._executor``.
    """

    engine_name = ""

    def __init__(self, settings: ModelSettings, slots: int, workers: int) -> None:
        self.settings = settings
        self.info = BackendInfo(settings.name, "llama_cpp", None, frozenset())
        self._engine: Any = None
        self._slots = slots
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"llama-{settings.name}")
        self._pending = 0
        self._weights: ServedWeights | None = None

    def _load(self, load_path: str) -> bool:
        raise NotImplementedError

    def _detail(self) -> dict[str, Any]:
        return {}

    async def start(self, weights: ServedWeights | None = None) -> None:
        loop = asyncio.get_running_loop()
        weights, path = await sealed_weights(
            self.settings, weights, lambda fn, *args: loop.run_in_executor(self._executor, fn, *args)
        )
        self._weights = weights
        try:
            has_template = await loop.run_in_executor(
                self._executor, self._load, str(weights.sealed.load_path)
            )
        except (ValueError, RuntimeError) as exc:  # both engines' way of saying the file would not load
            raise BackendUnavailable(
                f"model {self.settings.name!r}: llama.cpp could not load {path}: {exc}",
                hint="Run 'bastion vet' on the file; it may be truncated or not a GGUF model.",
            ) from exc
        endpoints: set[Endpoint] = {"completion"}
        if has_template or self.settings.chat_format:
            endpoints.add("chat")
        self.info = BackendInfo(
            self.settings.name,
            "llama_cpp",
            weights.digest,
            frozenset(endpoints),
            {
                "path": str(path),
                "n_ctx": self.settings.n_ctx,
                "chat_template": "gguf" if has_template else self.settings.chat_format,
                "engine": self.engine_name,
                **self._detail(),
            },
        )
        log.info(
            "model %s loaded from %s (%s) with %s", self.settings.name, path, weights.digest, self.engine_name
        )

    def _close_weights(self) -> None:
        if self._weights is not None:
            self._weights.close()
            self._weights = None

    def healthy(self) -> bool:
        return self._engine is not None

    def _loaded(self, endpoint: Endpoint) -> None:
        check_endpoint(self.settings, self.info.endpoints, endpoint)
        if self._engine is None:
            raise BackendUnavailable(f"model {self.settings.name!r} is not loaded")

    def _enter(self) -> None:
        # Runs on the event loop thread only, so the counter needs no lock.
        if self._pending >= self._slots + self.settings.max_queue:
            raise Busy(f"model {self.settings.name!r} is busy: {self._pending} requests running or queued")
        self._pending += 1

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("timings", None)  # llama.cpp's internals stay inside
        obj["model"] = self.settings.name
        obj["system_fingerprint"] = self.info.digest
        return obj

    def _prepare(self, endpoint: Endpoint, body: dict[str, Any], stream: bool) -> Any:
        """Check the request and translate it for the engine (on the event loop, before queueing)."""
        raise NotImplementedError

    def _complete(self, endpoint: Endpoint, prepared: Any, cancel: Cancel) -> dict[str, Any]:
        """Generate a whole answer (in a worker thread)."""
        raise NotImplementedError

    def _produce(self, endpoint: Endpoint, prepared: Any, cancel: Cancel, put: Callable[[Any], None]) -> None:
        """Generate a stream (in a worker thread): ``put`` each engine chunk, then :class:`Done`."""
        raise NotImplementedError

    def _chunk(self, item: dict[str, Any], usage: Usage) -> dict[str, Any] | None:
        """Our chunk for an engine chunk (None to drop it), counting usage."""
        raise NotImplementedError

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        prepared = self._prepare(endpoint, body, stream=False)
        self._enter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._complete, endpoint, prepared, cancel
            )
        finally:
            self._pending -= 1
        usage = result.get("usage") or {}
        return Reply(
            orjson.dumps(self._stamp(result)),
            Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
        )

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        prepared = self._prepare(endpoint, body, stream=True)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._enter()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._produce(endpoint, prepared, cancel, put)
            except Exception as exc:  # noqa: BLE001 - handed to the event loop, re-raised there
                put(exc)

        future = loop.run_in_executor(self._executor, work)
        last_id = ""
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Done):
                    if item.n_tokens is not None:
                        usage.prompt_tokens = max(item.n_tokens - usage.completion_tokens, 0)
                    break
                if isinstance(item, BastionError):
                    raise item
                if isinstance(item, Exception):
                    raise UsageError(f"model {self.settings.name!r} rejected the request: {item}") from item
                last_id = item.get("id", last_id)
                chunk = self._chunk(item, usage)
                if chunk is not None:
                    yield orjson.dumps(self._stamp(chunk))
            if include_usage:
                yield orjson.dumps(self._stamp(usage_chunk(last_id, endpoint, usage)))
        finally:
            cancel.set()
            await asyncio.shield(future)  # the engine stops at its next token; then the slot is free
            self._pending -= 1
