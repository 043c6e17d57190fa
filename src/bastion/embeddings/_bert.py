"""The BERT encoder forward pass in numpy (float32), as Hugging Face's ``BertModel`` computes it.

Only what a sentence-embedding model needs: embeddings (word + absolute position + token type 0),
``num_hidden_layers`` post-LayerNorm transformer blocks with exact (erf) GELU, then mean pooling over
the attention mask and L2 normalisation. No pooler head (sentence-transformers does not use it), no
dropout (inference), no cross-attention.

The weights are held read-only and nothing here mutates shared state, so one ``BertWeights`` can be
used by several threads at once; numpy's BLAS releases the GIL during the matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x), x >= 0.
# Its absolute error is below 1.5e-7 (a few float32 ulps near 1), so GELU computed from it stays within
# 1e-6 of the exact erf form BERT uses (tests/embeddings/test_bert.py checks it against math.erf on
# [-12, 12]). numpy has no erf, and scipy would add ~40 MB to the core for this one function.
_P = np.float32(0.3275911)
_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
_SQRT1_2 = np.float32(1.0 / math.sqrt(2.0))


def gelu(x: F32) -> F32:
    """GELU in the exact form BERT uses, ``0.5 * x * (1 + erf(x / sqrt(2)))`` (not the tanh shortcut).

    Overwrites and returns ``x``: it is called on a fresh matmul output, and working in place keeps
    this elementwise step (a quarter of the encoder's time otherwise) to a few passes over memory.
    """
    a = np.abs(x)
    a *= _SQRT1_2
    t = a * _P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _A[4]
    for coeff in (_A[3], _A[2], _A[1], _A[0]):
        poly += coeff
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # poly = 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, poly, out=poly)
    np.copysign(poly, x, out=poly)  # erf is odd
    poly += 1.0
    x *= poly
    x *= np.float32(0.5)
    return x


def layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    """LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    out: F32 = (centred / np.sqrt(var + np.float32(eps)) * weight + bias).astype(np.float32, copy=False)
    return out


@dataclass(frozen=True)
class LayerWeights:
    """One transformer block; matrices are stored transposed (``x @ w``) and Q, K, V fused."""

    qkv_w: F32  # [hidden, 3 * hidden]
    qkv_b: F32  # [3 * hidden]
    attn_out_w: F32  # [hidden, hidden]
    attn_out_b: F32
    attn_ln_w: F32
    attn_ln_b: F32
    inter_w: F32  # [hidden, intermediate]
    inter_b: F32
    out_w: F32  # [intermediate, hidden]
    out_b: F32
    out_ln_w: F32
    out_ln_b: F32


@dataclass(frozen=True)
class BertWeights:
    """Every tensor the encoder uses, plus the shape facts from config.json."""

    word: F32  # [vocab, hidden]
    position: F32  # [max_positions, hidden]
    token_type0: F32  # [hidden]: sentence embeddings use a single segment
    emb_ln_w: F32
    emb_ln_b: F32
    layers: tuple[LayerWeights, ...]
    num_heads: int
    eps: float

    @property
    def hidden(self) -> int:
        """Width of the hidden states (384 for all-MiniLM-L6-v2)."""
        return int(self.word.shape[1])


def _attention(x: F32, lw: LayerWeights, mask_bias: F32, num_heads: int) -> F32:
    batch, seq, hidden = x.shape
    head = hidden // num_heads
    qkv = x @ lw.qkv_w + lw.qkv_b  # [B, L, 3H]
    qkv = qkv.reshape(batch, seq, 3, num_heads, head).transpose(2, 0, 3, 1, 4)  # [3, B, h, L, d]
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(head)) + mask_bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    out: F32 = ctx @ lw.attn_out_w + lw.attn_out_b
    return out


def encode(weights: BertWeights, ids: I64, mask: I64) -> F32:
    """Run the encoder on padded ``ids`` [B, L] with ``mask`` [B, L] (1 = real token); returns [B, L, H]."""
    seq = ids.shape[1]
    x = weights.word[ids] + weights.position[:seq] + weights.token_type0
    x = layer_norm(x, weights.emb_ln_w, weights.emb_ln_b, weights.eps)
    # Padding keys get the most negative float32, as transformers does, so after the max-subtraction
    # their softmax weight is exactly 0 and a padded batch gives the same vectors as one text at a time.
    mask_bias = ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min).astype(
        np.float32
    )
    for lw in weights.layers:
        attn = _attention(x, lw, mask_bias, weights.num_heads)
        x = layer_norm(attn + x, lw.attn_ln_w, lw.attn_ln_b, weights.eps)
        inter = gelu(x @ lw.inter_w + lw.inter_b)
        x = layer_norm(inter @ lw.out_w + lw.out_b + x, lw.out_ln_w, lw.out_ln_b, weights.eps)
    return x


def mean_pool_normalise(hidden: F32, mask: I64) -> F32:
    """Mean over real tokens, then unit L2 norm (sentence-transformers' Pooling + Normalize)."""
    m = mask.astype(np.float32)[:, :, None]
    summed = (hidden * m).sum(axis=1)
    pooled = summed / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: F32 = (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return out
