"""Embedding backend: the bundled all-MiniLM-L6-v2 run in numpy (no torch), off the event loop."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from bastion import bundled
from bastion.config import ModelSettings
from bastion.errors import BackendUnavailable, BastionError, Busy, UsageError
from bastion.registry import ServedWeights, seal_unverified
from bastion.serve.backends.base import BackendInfo, Cancel, Endpoint, Reply, Usage

MAX_INPUTS = 2048


class MiniLMBackend:
    """Answer ``/v1/embeddings`` with a sentence-embedding model read from a Hugging Face folder."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.info = BackendInfo(settings.name, "minilm", None, frozenset())
        self._embedder: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{settings.name}")
        self._pending = 0

    async def start(self, weights: ServedWeights | None = None) -> None:
        from bastion.embeddings import MiniLMEmbedder

        path = bundled.resolve(self.settings.path or "")
        loop = asyncio.get_running_loop()
        try:
            if weights is None:
                weights = await loop.run_in_executor(self._executor, seal_unverified, path)
            # Load from the sealed copies (a private folder of links to them), then drop them: the
            # embedder holds its weights and tokenizer in its own memory, so nothing on disk is read
            # again and a later write to the folder cannot reach it.
            sealed = weights
            self._embedder = await loop.run_in_executor(
                self._executor,
                lambda: MiniLMEmbedder.load(sealed.sealed.load_path, expected_digest=sealed.digest),
            )
        except BastionError as exc:
            raise BackendUnavailable(f"model {self.settings.name!r}: {exc.message}", hint=exc.hint) from exc
        finally:
            if weights is not None:
                weights.close()
        self.info = BackendInfo(
            self.settings.name,
            "minilm",
            self._embedder.digest,
            frozenset({"embedding"}),
            {"path": str(path), "dimensions": self._embedder.dimensions},
        )

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._embedder = None

    def healthy(self) -> bool:
        return self._embedder is not None

    async def run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> Reply:
        if endpoint != "embedding":
            raise UsageError(
                f"model {self.settings.name!r} only serves embeddings",
                hint="Use /v1/embeddings.",
                param="model",
            )
        texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        if len(texts) > MAX_INPUTS:
            raise UsageError(f"at most {MAX_INPUTS} inputs per request", param="input")
        if body.get("dimensions") not in (None, self._embedder.dimensions):
            raise UsageError(f"this model has {self._embedder.dimensions} dimensions", param="dimensions")
        if self._pending >= 1 + self.settings.max_queue:
            raise Busy(f"model {self.settings.name!r} is busy")
        self._pending += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._embedder.embed, texts
            )
        finally:
            self._pending -= 1
        as_b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(vec.astype("<f4").tobytes()).decode()
                if as_b64
                else vec.tolist(),
            }
            for i, vec in enumerate(result.vectors)
        ]
        tokens = sum(result.token_counts)
        return Reply(
            orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": self.settings.name,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            ),
            Usage(tokens, 0),
        )

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, usage: Usage
    ) -> AsyncIterator[bytes]:
        raise UsageError("embeddings cannot be streamed", param="stream")
        yield b""  # pragma: no cover - makes this an async generator
