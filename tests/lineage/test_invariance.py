"""The signatures' invariances, exactly: rotation of the residual stream, unit permutation, norm scaling.

These use the WeightSource seam with in-memory arrays taken from the real SmolLM2 weights, so the
transformations are exact (no file round trip, no quantization) and the invariance can be asserted tightly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bastion import bundled
from bastion.formats.gguf_tensors import GGUFTensors
from bastion.lineage.compare import compare
from bastion.lineage.fingerprint import ANCHORS, fingerprint_source, normalise_token
from bastion.lineage.sources import Architecture

LAYERS = 3


class ArraySource:
    """A WeightSource over numpy arrays (the seam GGUF and safetensors sources implement)."""

    def __init__(
        self,
        emb: np.ndarray,
        ups: list[np.ndarray],
        downs: list[np.ndarray],
        norms: list[np.ndarray],
        vocab: list[str],
    ) -> None:
        self.emb, self.ups, self.downs, self.norms = emb, ups, downs, norms
        self.vocab, self.merges, self.tokenizer_kind = vocab, [], "gpt2"
        self.arch = Architecture("llama", len(ups), emb.shape[1], ups[0].shape[0], "gated", len(vocab))

    def embed_rows(self, ids: list[int]) -> np.ndarray:
        return self.emb[ids]

    def ffn_norm(self, layer: int) -> np.ndarray | None:
        return self.norms[layer]

    def up_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.ups[layer]

    def down_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.downs[layer]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def real() -> ArraySource:
    with GGUFTensors(bundled.smollm2()) as g:
        vocab = [str(t) for t in g.metadata["tokenizer.ggml.tokens"]]
        wanted = {i for i, t in enumerate(vocab) if normalise_token(t, "gpt2") in ANCHORS}
        emb = np.zeros((len(vocab), 576), np.float32)
        for i in wanted:  # only anchor rows are ever read
            emb[i] = g.rows("token_embd.weight", i, i + 1)[0]
        return ArraySource(
            emb,
            [g.rows(f"blk.{i}.ffn_up.weight") for i in range(LAYERS)],
            [g.rows(f"blk.{i}.ffn_down.weight") for i in range(LAYERS)],
            [g.rows(f"blk.{i}.ffn_norm.weight") for i in range(LAYERS)],
            vocab,
        )


def _signatures(src: ArraySource) -> list[tuple[np.ndarray, np.ndarray]]:
    fp = fingerprint_source(src, "x", "")
    return [(s.up.astype(int), s.down.astype(int)) for s in fp.layers]


def test_random_rotation_of_the_residual_stream_leaves_signatures_unchanged(real: ArraySource) -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((576, 576)))  # any orthogonal map, not just a permutation
    q = q.astype(np.float32)
    # x -> q x everywhere: embedding rows rotate, readers get W q^T, writers q W. The norm must be 1 for
    # RMSNorm to commute with a rotation, so fold it into the readers first (what a converter would do).
    ups = [(u * n) @ q.T for u, n in zip(real.ups, real.norms, strict=True)]
    rotated = ArraySource(
        real.emb @ q.T, ups, [q @ d for d in real.downs], [np.ones(576, np.float32)] * LAYERS, real.vocab
    )
    for (u0, d0), (u1, d1) in zip(_signatures(real), _signatures(rotated), strict=True):
        assert np.abs(u0 - u1).max() <= 1 and np.abs(d0 - d1).max() <= 1  # int8 rounding only


def test_unit_permutation_and_unit_rescaling_permute_the_signature_rows(real: ArraySource) -> None:
    rng = np.random.default_rng(1)
    perm = rng.permutation(1536)
    scale = rng.uniform(0.25, 4.0, 1536).astype(np.float32)  # up row x c, down column / c
    moved = ArraySource(
        real.emb,
        [u[perm] * scale[:, None] for u in real.ups],
        [d[:, perm] / scale[None, :] for d in real.downs],
        real.norms,
        real.vocab,
    )
    for (u0, d0), (u1, d1) in zip(_signatures(real), _signatures(moved), strict=True):
        assert np.abs(u0[perm] - u1).max() <= 1 and np.abs(d0[perm] - d1).max() <= 1


def test_scale_absorbed_into_the_norm_changes_nothing(real: ArraySource) -> None:
    c = np.random.default_rng(2).uniform(0.5, 2.0, 576).astype(np.float32)
    absorbed = ArraySource(
        real.emb, [u / c for u in real.ups], real.downs, [n * c for n in real.norms], real.vocab
    )
    for (u0, d0), (u1, d1) in zip(_signatures(real), _signatures(absorbed), strict=True):
        assert np.abs(u0 - u1).max() <= 1 and np.array_equal(d0, d1)


def test_unrelated_random_weights_of_the_same_shape_are_not_related(real: ArraySource) -> None:
    rng = np.random.default_rng(3)
    rand = ArraySource(
        real.emb,
        [rng.standard_normal(u.shape).astype(np.float32) for u in real.ups],
        [rng.standard_normal(d.shape).astype(np.float32) for d in real.downs],
        real.norms,
        real.vocab,
    )
    c = compare(fingerprint_source(real, "base", ""), fingerprint_source(rand, "random", ""))
    assert c.verdict == "not related" and (c.score or 0) < 0.01
