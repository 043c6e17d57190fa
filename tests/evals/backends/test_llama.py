"""Embedded llama.cpp scoring on the real SmolLM2, against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.bundled import smollm2
from bastion.evals import LlamaBackend

CTX = "Question: What is the capital of France?\nAnswer:"
CHOICES = [" Paris", " a small green banana"]


def _reference(context: str, continuation: str) -> float:
    """lm-eval's definition computed the slow, obvious way: llama-cpp-python with logits_all."""
    import llama_cpp

    ref = llama_cpp.Llama(model_path=str(smollm2()), n_ctx=256, logits_all=True, verbose=False)
    whole = ref.tokenize((context + continuation).encode(), add_bos=True)
    n_ctx = len(ref.tokenize(context.encode(), add_bos=True))
    ref.eval(whole)
    total = 0.0
    for pos in range(n_ctx - 1, len(whole) - 1):
        row = np.asarray(ref.scores[pos], dtype=np.float64)
        m = row.max()
        total += float(row[whole[pos + 1]] - (m + np.log(np.exp(row - m).sum())))
    ref.close()
    return total


@pytest.mark.slow
def test_shared_context_loglikelihoods_equal_the_reference(smol: LlamaBackend) -> None:
    got = smol.loglikelihoods(CTX, CHOICES)
    assert got == pytest.approx([_reference(CTX, c) for c in CHOICES], abs=1e-3)
    assert got[0] > got[1]  # the model knows Paris


@pytest.mark.slow
def test_context_reuse_gives_the_same_scores_with_fewer_tokens(smol: LlamaBackend) -> None:
    smol.reuse_context = False
    smol.tokens_evaluated = 0
    without = smol.loglikelihoods(CTX, CHOICES)
    cost_without = smol.tokens_evaluated
    smol.reuse_context = True
    smol.tokens_evaluated = 0
    with_reuse = smol.loglikelihoods(CTX, CHOICES)
    assert with_reuse == pytest.approx(without, abs=1e-3)
    assert smol.tokens_evaluated < cost_without


@pytest.mark.slow
def test_greedy_completion_stops_at_stop_sequence(smol: LlamaBackend) -> None:
    g = smol.complete("Question: What is 2+3?\nAnswer:", max_tokens=16, stop=["\n"])
    assert "\n" not in g.text and 0 < g.completion_tokens <= 16
    assert smol.info.digest is not None and smol.info.digest.startswith("sha256:")
    assert smol.info.chat  # SmolLM2-Instruct ships a chat template


def test_missing_model_file_is_unusable_input(tmp_path: object) -> None:
    from pathlib import Path

    from bastion.errors import UnusableInput

    with pytest.raises(UnusableInput):
        LlamaBackend(Path("/nonexistent/model.gguf"))
