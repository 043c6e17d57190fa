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

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from jinja2 import TemplateError

from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, UsageError
from bastion.serve.backends.base import Cancel, Endpoint, Usage
from bastion.serve.backends.local import (
    Done,
    EmbeddedBackend,
    counts_as_token,
    prompt_of,
    response_format,
    sampling,
)


class _Cancelled(Exception):
    """Raised inside the worker thread to abandon a generation whose client has gone."""


class LlamaCppBackend(EmbeddedBackend):
    """Serve one GGUF file with llama.cpp, off the event loop, with a bounded queue."""

    engine_name = "llama-cpp-python"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings, slots=1, workers=1)

    def _load(self, load_path: str) -> bool:
        from llama_cpp import Llama  # imported here so commands that never serve stay fast

        self._engine = Llama(
            model_path=load_path,
            n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads or min(os.cpu_count() or 1, 4),
            chat_format=self.settings.chat_format,
            verbose=False,
        )
        return bool(self._engine.metadata.get("tokenizer.chat_template"))

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._close_weights()

    # -- requests ---------------------------------------------------------------------------------

    def _prepare(self, endpoint: Endpoint, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        self._loaded(endpoint)
        common = sampling(self.settings, body)
        if endpoint == "chat":
            return {
                "messages": body["messages"],
                "response_format": response_format(body.get("response_format")),
                **common,
            }
        return {"prompt": prompt_of(body), **common}

    def _function(self, endpoint: Endpoint) -> Any:
        return self._engine.create_chat_completion if endpoint == "chat" else self._engine.create_completion

    def _complete(self, endpoint: Endpoint, prepared: Any, cancel: Cancel) -> dict[str, Any]:
        from llama_cpp import LogitsProcessorList

        def abort_if_cancelled(_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> Any:
            if cancel.is_set():
                raise _Cancelled
            return scores

        if cancel.is_set():  # the client left while the request waited in the queue
            raise BackendUnavailable("client disconnected")
        try:
            result: dict[str, Any] = self._function(endpoint)(
                **prepared, logits_processor=LogitsProcessorList([abort_if_cancelled])
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

    def _produce(self, endpoint: Endpoint, prepared: Any, cancel: Cancel, put: Callable[[Any], None]) -> None:
        gen = self._function(endpoint)(**prepared, stream=True)
        try:
            for chunk in gen:
                if cancel.is_set():
                    break
                put(chunk)
        finally:
            gen.close()  # stops llama.cpp's decode loop when we broke out early
        put(Done(self._engine.n_tokens))

    def _chunk(self, item: dict[str, Any], usage: Usage) -> dict[str, Any] | None:
        if counts_as_token(item):
            usage.completion_tokens += 1
        return item
