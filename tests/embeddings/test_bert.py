"""The numpy BERT encoder against exact formulas and against transformers' BertModel (torch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bastion.embeddings import MiniLMEmbedder, _bert, _folder


def test_gelu_matches_exact_erf_form_to_float32_precision() -> None:
    xs = np.linspace(-12, 12, 200_001, dtype=np.float32)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in xs.astype(np.float64)])
    got = _bert.gelu(xs.copy())
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() < 1e-6
    # and it is not the tanh approximation, which is off by up to ~5e-4 around |x| = 2
    tanh_form = 0.5 * xs * (1 + np.tanh(math.sqrt(2 / math.pi) * (xs + 0.044715 * xs**3)))
    assert np.abs(tanh_form - exact).max() > 1e-4


def test_layer_norm_uses_the_given_eps() -> None:
    x = np.array([[1.0, 1.0 + 1e-3, 1.0 - 1e-3]], dtype=np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    tight = _bert.layer_norm(x, ones, zeros, 1e-12)
    loose = _bert.layer_norm(x, ones, zeros, 1e-5)
    np.testing.assert_allclose(tight, [[0.0, math.sqrt(1.5), -math.sqrt(1.5)]], atol=1e-3)
    assert abs(loose[0, 1]) < 0.5 * abs(tight[0, 1])  # eps 1e-5 dominates a variance of 7e-7


def test_encoder_matches_transformers_bert_model_on_a_non_default_config(
    tiny_bert: Path, tiny_config: dict[str, object]
) -> None:
    import torch
    from transformers import BertConfig, BertModel

    cfg = _folder.read_config(tiny_bert)
    assert (cfg.heads, cfg.eps, cfg.layers) == (4, 1e-5, 2)
    weights = _folder.load_weights(tiny_bert, cfg)
    ref = BertModel(BertConfig(**tiny_config), add_pooling_layer=False).eval()
    from safetensors.torch import load_file

    missing, unexpected = ref.load_state_dict(load_file(str(tiny_bert / "model.safetensors")), strict=False)
    assert not unexpected and all("position_ids" in m for m in missing)

    ids = np.array([[101, 7592, 2088, 2003, 102], [101, 4937, 102, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    ours = _bert.encode(weights, ids, mask)
    with torch.no_grad():
        theirs = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    real = mask.astype(bool)  # padded positions are ignored by pooling; compare the real tokens
    np.testing.assert_allclose(ours[real], theirs.numpy()[real], atol=2e-5)


def test_tiny_folder_embeds_with_its_own_limit_and_width(tiny_bert: Path) -> None:
    emb = MiniLMEmbedder.load(tiny_bert)
    assert (emb.dimensions, emb.max_tokens) == (32, 24)
    result = emb.embed(["word " * 100, "two words"])
    assert result.token_counts == [24, 4] and result.truncated == [True, False]
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
