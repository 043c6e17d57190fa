"""Ranking functions: only permitted rows are ranked, whichever path computes the scores; RRF."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.rag.search import bm25_rank, fuse, rrf, vector_rank


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.49, 0.5, 0.9, 1.0])
def test_vector_rank_ranks_exactly_the_permitted_rows(fraction: float) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[7]  # row 7 is the best match of all; permitted or not decides whether it shows
    rows = np.flatnonzero(rng.random(500) < fraction).astype(np.int64)
    got = vector_rank(vectors, rows, query, 10)
    assert {r for r, _ in got} <= set(rows.tolist())
    want = sorted(rows.tolist(), key=lambda r: -float(vectors[r] @ query))[:10]
    assert [r for r, _ in got] == want
    assert (7 in {r for r, _ in got}) == (7 in set(rows.tolist()))


def test_bm25_rank_drops_rows_without_a_match_and_keeps_permitted_only() -> None:
    scores = np.array([0.0, 3.0, 1.0, 5.0], dtype=np.float32)
    assert bm25_rank(scores, np.array([0, 1, 2], dtype=np.int64), 10) == [(1, 3.0), (2, 1.0)]


def test_reciprocal_rank_fusion_sums_reciprocal_ranks() -> None:
    fused = rrf([(1, 9.0), (2, 8.0)], [(2, 0.9), (3, 0.8)], k=3)
    assert [r for r, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_z_score_fusion_keeps_a_confident_retrievers_outlier_first() -> None:
    # BM25 is sure of row 1 (far above its other scores); the vectors barely prefer row 2 over row 1.
    bm25 = [(1, 12.0), (3, 2.0), (4, 1.9), (5, 1.8)]
    vector = [(2, 0.61), (1, 0.60), (4, 0.59), (5, 0.58)]
    fused = fuse(bm25, vector, k=3)
    assert [r for r, _ in fused] == [1, 2, 3]
    zb = (12.0 - np.mean([12.0, 2.0, 1.9, 1.8])) / np.std([12.0, 2.0, 1.9, 1.8])
    zv = (0.60 - np.mean([0.61, 0.60, 0.59, 0.58])) / np.std([0.61, 0.60, 0.59, 0.58])
    assert fused[0][1] == pytest.approx((zb + zv) / 2)


def test_z_score_fusion_of_one_list_keeps_its_order() -> None:
    vector = [(2, 0.9), (1, 0.5), (3, 0.1)]
    assert [r for r, _ in fuse(vector, [], k=3)] == [2, 1, 3]
