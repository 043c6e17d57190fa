"""Embedded llama.cpp backend: a GGUF loaded in-process with llama-cpp-python.

One model instance is not thread-safe, so each model has one worker thread that runs its requests one
at a time; the event loop never blocks on inference. Requests beyond the running one wait in a bounded
queue (``max_queue``); past that the gateway answers 429 at once instead of letting latency grow without
limit. A client that disconnects sets its ``Cancel``; generation stops at the next token.

Only verified bytes answer: llama.cpp never opens the configured path. It loads ``/proc/self/fd/N`` of a
sealed in-memory copy whose hash the gateway compared with the signed manifest
(:mod:`bastion.registry.sealed`), so neither a swap of the file before the load nor an in-place write
while serving can change the weights behind the reported digest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from jinja2 import TemplateError

from bastion import bundled
from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, Busy, UsageError
from bastion.registry import ServedWeights, seal_unverified
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

log = logging.getLogger("bastion.serve")


class _Cancelled(Exception):
    """Raised inside the worker thread to abandon a generation whose client has gone."""


class _Done:
    def __init__(self, n_tokens: int) -> None:
        self.n_tokens = n_tokens


def _response_format(value: Any) -> dict[str, Any] | None:
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


class LlamaCppBackend:
    """Serve one GGUF file with llama.cpp, off the event loop, with a bounded queue."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.info = BackendInfo(settings.name, "llama_cpp", None, frozenset())
        self._llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{settings.name}")
        self._pending = 0
        self._failed: str | None = None
        self._weights: ServedWeights | None = None

    async def start(self, weights: ServedWeights | None = None) -> None:
        path = bundled.resolve(self.settings.path or "")
        loop = asyncio.get_running_loop()
        if weights is None:
            if not path.is_file():
                raise BackendUnavailable(
                    f"model {self.settings.name!r}: GGUF file {path} does not exist",
                    hint="Fix models.path in the configuration, or run 'make demo' to install bundled"
                    " models.",
                )
            try:
                weights = await loop.run_in_executor(self._executor, seal_unverified, path)
            except BastionError as exc:
                raise BackendUnavailable(
                    f"model {self.settings.name!r}: {exc.message}", hint=exc.hint
                ) from exc
        self._weights = weights
        digest = weights.digest
        try:
            self._llm = await loop.run_in_executor(self._executor, self._load, str(weights.sealed.load_path))
        except ValueError as exc:  # llama-cpp-python's way of saying the file would not load
            raise BackendUnavailable(
                f"model {self.settings.name!r}: llama.cpp could not load {path}: {exc}",
                hint="Run 'bastion vet' on the file; it may be truncated or not a GGUF model.",
            ) from exc
        has_template = bool(self._llm.metadata.get("tokenizer.chat_template"))
        endpoints: set[Endpoint] = {"completion"}
        if has_template or self.settings.chat_format:
            endpoints.add("chat")
        self.info = BackendInfo(
            self.settings.name,
            "llama_cpp",
            digest,
            frozenset(endpoints),
            {
                "path": str(path),
                "n_ctx": self.settings.n_ctx,
                "chat_template": "gguf" if has_template else self.settings.chat_format,
            },
        )
        log.info("model %s loaded from %s (%s)", self.settings.name, path, digest)

    def _load(self, path: str) -> Any:
        from llama_cpp import Llama  # imported here so commands that never serve stay fast

        return Llama(
            model_path=path,
            n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads or min(os.cpu_count() or 1, 4),
            chat_format=self.settings.chat_format,
            verbose=False,
        )

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None
        if self._weights is not None:
            self._weights.close()
            self._weights = None

    def healthy(self) -> bool:
        return self._llm is not None

    # -- requests ---------------------------------------------------------------------------------

    def _kwargs(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint not in self.info.endpoints:
            hint = (
                "This GGUF has no chat template: set chat_format for the model in the configuration,"
                " or use /v1/completions."
                if endpoint == "chat"
                else "Use a model whose backend supports this endpoint."
            )
            raise UsageError(
                f"model {self.settings.name!r} does not support {endpoint}", hint=hint, param="model"
            )
        if self._llm is None:
            raise BackendUnavailable(f"model {self.settings.name!r} is not loaded")
        common: dict[str, Any] = {
            "max_tokens": min(
                body.get("max_tokens")
                or body.get("max_completion_tokens")
                or self.settings.default_max_tokens,
                self.settings.n_ctx,
            ),
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "stop": body.get("stop") or [],
            "seed": body.get("seed"),
            "presence_penalty": body.get("presence_penalty") or 0.0,
            "frequency_penalty": body.get("frequency_penalty") or 0.0,
        }
        if endpoint == "chat":
            return {
                "messages": body["messages"],
                "response_format": _response_format(body.get("response_format")),
                **common,
            }
        prompt = body["prompt"]
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise UsageError("prompt must be a string or a list of one string", param="prompt")
            prompt = prompt[0]
        return {"prompt": prompt, **common}

    def _enter(self) -> None:
        # Runs on the event loop thread only, so the counter needs no lock.
        if self._pending >= 1 + self.settings.max_queue:
            raise Busy(f"model {self.settings.name!r} is busy: {self._pending} requests running or queued")
        self._pending += 1

    def _function(self, endpoint: Endpoint) -> Any:
        return self._llm.create_chat_completion if endpoint == "chat" else self._llm.create_completion

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["model"] = self.settings.name
        obj["system_fingerprint"] = self.info.digest
        return obj

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        kwargs = self._kwargs(endpoint, body)
        self._enter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._generate, endpoint, kwargs, cancel
            )
        finally:
            self._pending -= 1
        usage = result.get("usage") or {}
        return Reply(
            orjson.dumps(self._stamp(result)),
            Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
        )

    def _generate(self, endpoint: Endpoint, kwargs: dict[str, Any], cancel: Cancel) -> dict[str, Any]:
        from llama_cpp import LogitsProcessorList

        def abort_if_cancelled(_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> Any:
            if cancel.is_set():
                raise _Cancelled
            return scores

        if cancel.is_set():  # the client left while the request waited in the queue
            raise BackendUnavailable("client disconnected")
        try:
            result: dict[str, Any] = self._function(endpoint)(
                **kwargs, logits_processor=LogitsProcessorList([abort_if_cancelled])
            )
        except _Cancelled as exc:
            raise BackendUnavailable("client disconnected") from exc
        except BastionError:
            raise
        except (ValueError, RuntimeError, TypeError, TemplateError) as exc:
            # The request is what llama-cpp-python could not take: a prompt longer than the context
            # window, or messages the model's chat template cannot render (an assistant turn without
            # content, roles out of the order the template insists on). A 400, as when streaming.
            raise UsageError(f"model {self.settings.name!r} rejected the request: {exc}") from exc
        return result

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        kwargs = self._kwargs(endpoint, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._enter()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def work() -> None:
            try:
                gen = self._function(endpoint)(**kwargs, stream=True)
                try:
                    for chunk in gen:
                        if cancel.is_set():
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
                finally:
                    gen.close()  # stops llama.cpp's decode loop when we broke out early
                loop.call_soon_threadsafe(queue.put_nowait, _Done(self._llm.n_tokens))
            except Exception as exc:  # noqa: BLE001 - handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        future = loop.run_in_executor(self._executor, work)
        last_id = ""
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    usage.prompt_tokens = max(item.n_tokens - usage.completion_tokens, 0)
                    break
                if isinstance(item, Exception):
                    raise UsageError(f"model {self.settings.name!r} rejected the request: {item}") from item
                last_id = item.get("id", last_id)
                choice = item["choices"][0]
                if choice.get("text") or (choice.get("delta") or {}).get("content"):
                    usage.completion_tokens += 1
                yield orjson.dumps(self._stamp(item))
            if include_usage:
                yield orjson.dumps(
                    self._stamp(
                        {
                            "id": last_id,
                            "object": "chat.completion.chunk" if endpoint == "chat" else "text_completion",
                            "choices": [],
                            "usage": {
                                "prompt_tokens": usage.prompt_tokens,
                                "completion_tokens": usage.completion_tokens,
                                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                            },
                        }
                    )
                )
        finally:
            cancel.set()
            await asyncio.shield(future)  # the worker stops at its next token; then the slot is free
            self._pending -= 1
