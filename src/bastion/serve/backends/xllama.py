"""Embedded llama.cpp through xllamacpp: llama.cpp's own server loop, in-process, many users at once.

llama-cpp-python runs one request at a time per model. xllamacpp runs llama.cpp's server loop in this
process: ``parallel`` slots, each with its own ``n_ctx`` of KV cache, decoded together in one batch per
step (continuous batching), so a second user does not wait for the first to finish. We call its
handlers directly (no HTTP): each request blocks one thread of ours in C++ with the GIL released.

Differences from the llama-cpp-python engine, measured in bench/engines.py: requests decoded in one
batch can get other greedy answers than the same request alone (batched products round differently);
a non-streamed request cannot be stopped halfway (llama.cpp's handler answers only at the end), so a
client that leaves keeps its slot until ``max_tokens``; ``completion_tokens`` counts the end-of-turn
token too (one more than llama-cpp-python reports).

Integrity is the same as for the other engine: llama.cpp maps ``/proc/self/fd/N`` of the sealed copy
the gateway hashed and compared with the signed manifest, never the configured path.

xllamacpp always starts llama.cpp's HTTP listener as well (``Server`` has no switch for it), with no
key and CORS open to every origin by default. That would be a door to the model around
authentication, Cedar, quotas and the audit log, so we shut it: it listens on a Unix socket in a
private 0700 folder (no TCP port, so no browser and no other user can reach it), requires a random
key that never leaves this object, and has its web UI, slot save/restore and metrics turned off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, UsageError
from bastion.formats.gguf import read_gguf
from bastion.serve.backends.base import Cancel, Endpoint, Usage
from bastion.serve.backends.local import (
    Done,
    EmbeddedBackend,
    counts_as_token,
    prompt_of,
    response_format,
    sampling,
)

log = logging.getLogger("bastion.serve")

#: the xllamacpp release measured in bench/engines.py; another one may change answers or defaults
XLLAMACPP_VERSION = "2026.10.11549"


def _failure(name: str, result: dict[str, Any]) -> BastionError | None:
    """The error a llama.cpp server answer carries, as ours (400s are the caller's; others ours)."""
    error = result.get("error") if isinstance(result.get("error"), dict) else None
    if error is None and "code" in result and "choices" not in result:
        error = result
    if error is None:
        return None
    message = str(error.get("message") or error)
    if int(error.get("code") or 500) == 400:
        return UsageError(f"model {name!r} rejected the request: {message}")
    return BackendUnavailable(f"model {name!r} failed: {message}")


class XllamaBackend(EmbeddedBackend):
    """Serve one GGUF file with llama.cpp's server loop: ``parallel`` requests decoded together."""

    engine_name = "xllamacpp"

    def __init__(self, settings: ModelSettings) -> None:
        # one thread per running or queued request: each blocks in C++ (GIL released) until done
        workers = settings.parallel + settings.max_queue + 1
        super().__init__(settings, slots=settings.parallel, workers=workers)
        self._private: Path | None = None
        self._version = ""

    def _detail(self) -> dict[str, Any]:
        return {"parallel": self.settings.parallel, "engine_version": self._version}

    def _load(self, load_path: str) -> bool:
        import xllamacpp  # imported here so commands that never serve stay fast

        self._version = str(xllamacpp.__version__)
        if self._version != XLLAMACPP_VERSION:
            log.warning("xllamacpp %s is not the measured %s: greedy answers and defaults may differ",
                        self._version, XLLAMACPP_VERSION)
        has_template = bool(read_gguf(Path(load_path)).metadata.get("tokenizer.chat_template"))
        s = self.settings
        threads = s.n_threads or min(os.cpu_count() or 1, 4)
        params = xllamacpp.CommonParams()
        params.model.path = load_path
        params.n_parallel = s.parallel
        params.n_ctx = s.n_ctx * s.parallel  # split evenly: every slot gets exactly n_ctx, as one request
        params.kv_unified = False
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.fit_params = False  # the configured n_ctx, not one fitted to free memory
        params.cache_ram_mib = 0  # no prompt cache beyond the slots' KV: memory stays what n_ctx says
        params.offline = True
        # llama-cpp-python computes attention without flash attention; llama.cpp's "auto" turns it on
        # on CPU, and the different rounding flips greedy answers (bench/README.md, identity).
        params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.verbosity = 0
        if s.chat_format:
            params.chat_template = s.chat_format
        # The HTTP listener we cannot switch off: see the module docstring.
        self._private = Path(tempfile.mkdtemp(prefix="bastion-xllama-"))
        params.hostnames = [str(self._private / "engine.sock")]
        params.api_keys = [secrets.token_urlsafe(32)]
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_metrics = False
        params.endpoint_props = False
        params.cors_origins = ""
        self._engine = xllamacpp.Server(params)
        return has_template

    @property
    def listening_address(self) -> str | None:
        """Where llama.cpp's own HTTP listener is (a private Unix socket; for tests and doctors)."""
        return None if self._engine is None else str(self._engine.listening_address)

    async def aclose(self) -> None:
        if self._engine is not None:
            # The last reference is dropped in a worker thread: the destructor joins llama.cpp's loop.
            holder = [self._engine]
            self._engine = None
            await asyncio.get_running_loop().run_in_executor(None, holder.clear)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._close_weights()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    # -- requests ---------------------------------------------------------------------------------

    def _prepare(self, endpoint: Endpoint, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        """The llama.cpp server request: only the fields we vet, never the caller's body as is."""
        self._loaded(endpoint)
        request = {k: v for k, v in sampling(self.settings, body).items() if v is not None}
        if endpoint == "chat":
            request["messages"] = body["messages"]
            if response_format(body.get("response_format")) is not None:
                request["response_format"] = body["response_format"]
        else:
            request["prompt"] = prompt_of(body)
        if stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}  # the prompt tokens, for quotas
        return request

    def _handler(self, endpoint: Endpoint) -> Any:
        return self._engine.handle_chat_completions if endpoint == "chat" else self._engine.handle_completions

    def _complete(self, endpoint: Endpoint, prepared: Any, cancel: Cancel) -> dict[str, Any]:
        if cancel.is_set():  # the client left while the request waited for a thread
            raise BackendUnavailable("client disconnected")
        try:
            result: dict[str, Any] = self._handler(endpoint)(prepared)
        except ValueError as exc:  # a chat template that cannot render these messages
            raise UsageError(f"model {self.settings.name!r} rejected the request: {exc}") from exc
        failure = _failure(self.settings.name, result)
        if failure is not None:
            raise failure
        return result

    def _produce(self, endpoint: Endpoint, prepared: Any, cancel: Cancel, put: Callable[[Any], None]) -> None:
        def chunk(value: dict[str, Any]) -> bool:
            put(value)
            return cancel.is_set()  # True stops llama.cpp's generation for this slot at once

        if not cancel.is_set():
            self._handler(endpoint)(prepared, chunk)
        put(Done())

    def _chunk(self, item: dict[str, Any], usage: Usage) -> dict[str, Any] | None:
        failure = _failure(self.settings.name, item)
        if failure is not None:
            raise failure
        reported = item.pop("usage", None)
        if reported:
            usage.prompt_tokens = int(reported.get("prompt_tokens", 0))
        if counts_as_token(item):
            usage.completion_tokens += 1
        # the engine's own usage chunk is dropped; ours follows if the client asked
        return item if item.get("choices") else None
