"""Embedded llama.cpp backend with shared-context log-likelihood scoring.

A multiple-choice item has one context and k continuations. Re-evaluating the context for each choice
wastes k-1 context passes, which dominates on CPU. Here the context is decoded once into the KV cache
(sequence 0, positions 0..n-1); for each choice the cache is truncated back to n with
``llama_memory_seq_rm`` and only the choice tokens are decoded, asking llama.cpp for logits only at
the positions we score (not ``logits_all``, which would keep n_ctx x n_vocab floats: 0.4 GB for
SmolLM2, 2 GB for Gemma's 262k vocabulary).

Tokenisation follows lm-eval's ``_encode_pair``: ``whole = tok(context + continuation)``,
``context_len = len(tok(context))``, continuation tokens ``whole[context_len:]``. The shared prefix is
the longest common token prefix of all ``whole`` encodings (capped at ``context_len``), so a BPE merge
across the boundary can never make us score a token sequence other than lm-eval's.

The scores equal those of a full pass per choice up to llama.cpp's batch-size-dependent kernels
(a 2-token and a 65-token decode of the same tokens differ slightly: up to 0.56 nats on one of 30
ARC-Easy items with SmolLM2 Q4_1, changing 1 of 30 predictions); bench/eval.py measures both.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bastion.errors import BackendUnavailable, UnusableInput, UsageError
from bastion.evals.backends.base import Generation, TargetInfo, transcript_prompt
from bastion.hashing import file_digest


class LlamaBackend:
    """A GGUF model run in-process by llama-cpp-python."""

    def __init__(self, path: Path, *, name: str | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, reuse_context: bool = True, digest: str | None = None) -> None:
        import llama_cpp  # imported lazily: loading the shared library costs ~0.4 s

        self._lc = llama_cpp
        if not path.is_file():
            raise UnusableInput(f"model file {path} does not exist",
                                hint="Give a GGUF path or a bundled name (smollm2, gemma3).")
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512,
                                       n_threads=n_threads or min(2, os.cpu_count() or 1), verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UnusableInput(f"llama.cpp cannot load {path}: {exc}",
                                hint="Check that the file is a GGUF model (bastion vet can tell).") from exc
        self.reuse_context = reuse_context
        self.n_ctx = n_ctx
        self._n_vocab = self.llm.n_vocab()
        self._batch = llama_cpp.llama_batch_init(512, 0, 1)
        has_template = "tokenizer.chat_template" in self.llm.metadata
        self.info = TargetInfo(kind="llama.cpp", name=name or path.name, digest=digest or file_digest(path),
                               loglikelihood=True, chat=has_template,
                               detail={"path": str(path), "n_ctx": n_ctx, "reuse_context": reuse_context})
        self.tokens_evaluated = 0

    # -- low level --------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        # add_bos=True adds BOS only if the model's vocabulary asks for it (Gemma yes, SmolLM2 no).
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _truncate(self, p0: int) -> None:
        mem = self._lc.llama_get_memory(self.llm.ctx)
        self._lc.llama_memory_seq_rm(mem, -1, p0, -1)

    def _decode(self, tokens: Sequence[int], start: int, want: set[int]) -> dict[int, np.ndarray]:
        """Decode ``tokens`` at positions start.. and return log-softmax rows for positions in ``want``."""
        rows: dict[int, np.ndarray] = {}
        b = self._batch
        for off in range(0, len(tokens), 512):
            chunk = tokens[off:off + 512]
            b.n_tokens = len(chunk)
            for j, tok in enumerate(chunk):
                pos = start + off + j
                b.token[j] = tok
                b.pos[j] = pos
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = 0
                b.logits[j] = pos in want
            rc = self._lc.llama_decode(self.llm.ctx, b)
            if rc != 0:
                raise BackendUnavailable(f"llama_decode failed with status {rc}",
                                         hint="The context may be full; lower --limit or use a larger n_ctx.")
            self.tokens_evaluated += len(chunk)
            for j in range(len(chunk)):
                pos = start + off + j
                if pos in want:
                    ptr = self._lc.llama_get_logits_ith(self.llm.ctx, j)
                    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                                   shape=(self._n_vocab,)).astype(np.float64)
                    m = logits.max()
                    rows[pos] = logits - (m + np.log(np.exp(logits - m).sum()))
        return rows

    # -- Backend protocol -------------------------------------------------------------------------------
    def loglikelihoods(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Summed log-probs of each continuation; the shared context is decoded once when reuse is on."""
        ctx_len = len(self._tokenize(context))
        wholes = [self._tokenize(context + c) for c in continuations]
        if ctx_len == 0 or any(len(w) <= ctx_len for w in wholes):
            raise UsageError("empty context or continuation", hint="Every item needs a context and choices.")
        if max(len(w) for w in wholes) > self.n_ctx:
            need = max(len(w) for w in wholes)
            raise UsageError(f"an item needs {need} tokens, more than n_ctx {self.n_ctx}",
                             hint="Use a larger context window.")
        self.llm.reset()  # type: ignore[no-untyped-call]  # the high-level object must not assume anything about the cache we now use
        self._truncate(0)
        shared = 0
        shared_rows: dict[int, np.ndarray] = {}
        if self.reuse_context:
            shared = ctx_len
            for w in wholes:
                while shared > 0 and w[:shared] != wholes[0][:shared]:
                    shared -= 1
            # The last shared position predicts the first continuation token when shared == ctx_len.
            shared_rows = self._decode(wholes[0][:shared], 0, {ctx_len - 1})
        out = []
        for w in wholes:
            self._truncate(shared)
            want = set(range(ctx_len - 1, len(w) - 1))
            # The final token is never decoded: its logits would predict beyond the continuation.
            rows = {**shared_rows, **self._decode(w[shared:len(w) - 1], shared, want)}
            out.append(float(sum(rows[p][w[p + 1]] for p in sorted(want))))
        self._truncate(0)
        return out

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Generation:
        """Greedy completion (temperature 0, no repetition penalty), stopping at any of ``stop``."""
        res = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                         repeat_penalty=1.0, stop=list(stop) or None)
        text = str(res["choices"][0]["text"])  # type: ignore[index]
        return Generation(text, int(res["usage"]["completion_tokens"]))  # type: ignore[index]

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int) -> Generation:
        """Chat via the GGUF's own template; base models without one get a plain transcript prompt."""
        if not self.info.chat:
            return self.complete(transcript_prompt(messages), max_tokens=max_tokens, stop=["\nUser:"])
        res = self.llm.create_chat_completion(messages=list(messages), max_tokens=max_tokens,  # type: ignore[arg-type]
                                              temperature=0.0, top_k=1, repeat_penalty=1.0)
        text = res["choices"][0]["message"]["content"] or ""  # type: ignore[index]
        return Generation(str(text), int(res["usage"]["completion_tokens"]))  # type: ignore[index]

    def close(self) -> None:
        """Free the batch and the model."""
        if self._batch is not None:
            self._lc.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()
