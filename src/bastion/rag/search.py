"""Ranking over permitted rows: BM25, MiniLM cosine, and reciprocal rank fusion of the two.

Every function here receives the ``permitted`` mask and scores only those rows; what is not permitted
has no score, no rank and no place in a count.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MODES = ("hybrid", "bm25", "vector")
#: RRF's k (Cormack et al. 2009): damps the weight of the very first ranks
RRF_K = 60
#: ranks taken from each retriever before fusing (a chunk deep in one list still counts)
FUSE_DEPTH = 100


def top(scores: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(row, score)`` among ``rows`` by ``scores`` (aligned with ``rows``), best first;
    ties broken by row so results are deterministic."""
    if k <= 0 or len(rows) == 0:
        return []
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(rows))
    order = sorted(part.tolist(), key=lambda i: (-float(scores[i]), int(rows[i])))
    return [(int(rows[i]), float(scores[i])) for i in order]


def vector_rank(
    vectors: npt.NDArray[np.float32],
    permitted_rows: npt.NDArray[np.int64],
    query: npt.NDArray[np.float32],
    k: int,
) -> list[tuple[int, float]]:
    """Cosine (dot product of unit vectors) over permitted rows only."""
    if len(permitted_rows) == 0:
        return []
    if 2 * len(permitted_rows) >= len(vectors):
        # Most rows permitted: one product over the whole matrix is cheaper than copying the permitted
        # rows out (measured: 37 against 67 ms at 100k chunks, half permitted). The other rows' values
        # are dropped here, before any comparison: they are never ranked, returned or counted.
        scores = (vectors @ query)[permitted_rows]
    else:
        scores = vectors[permitted_rows] @ query
    return top(scores.astype(np.float32), permitted_rows, k)


def bm25_rank(
    scores: npt.NDArray[np.float32], permitted_rows: npt.NDArray[np.int64], k: int
) -> list[tuple[int, float]]:
    """Rows with a positive BM25 score, best first (a chunk sharing no term is not a BM25 hit)."""
    sub = scores[permitted_rows]
    matched = sub > 0
    return top(sub[matched], permitted_rows[matched], k)


def fuse(*rankings: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list gives 1/(RRF_K + rank) to its rows; sum, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _score) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
