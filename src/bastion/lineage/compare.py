"""Compare two fingerprints: a unit-matching test with a p-value against independent training.

The test (after the "match" independence test of Zhu et al., ICML 2025) asks, per pair of blocks:
if we pair each hidden unit of A with its most similar unit of B once by the ``up`` signatures and
once, separately, by the ``down`` signatures, how often do the two pairings agree?

* In a derived model the units are the same units (perhaps permuted, re-quantized, fine-tuned), so
  both pairings find the same partner for nearly every unit.
* In an independently trained model nothing ties unit j's read direction (up) to its write
  direction (down) the way A's are tied, so the two pairings agree only by chance.

Chance is not simply 1/n. Some units of B are "hubs" that many units of A pick, so we estimate
the agreement two unrelated pairings would reach as p0 = Σ_j f_up(j)·f_down(j) (f_x(j): share of A's
units whose x-pairing picked j). And independently trained models do share a few units: convergent
learning gives real agreements. We measured this on independent pairs (Gemma 3 270M vs SmolLM2-135M:
at most 1.3% of units in any of 144 block pairs; SmolLM2-shaped models from other seeds: see
bench/README.md), so the null hypothesis is composite: "B was trained independently of A, and so
shares at most NULL_RATE (5%, about 4x the worst we measured) of its units with A". Each block pair's
count of agreements k is tested against Binomial(n, max(p0, NULL_RATE)) and the smallest p-value is
Bonferroni-corrected over the block pairs tried. That corrected p-value is the reported
false-positive rate: how often a model trained independently of A would score this high. It is only
as good as NULL_RATE's calibration, and it says nothing about an adversary who retrains to evade it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.lineage.fingerprint import CLIP, SKETCH_K, Fingerprint

RELATED_LOG10_P = -6.0  # FPR at most 1e-6 after correction: "related"
UNRELATED_LOG10_P = -2.0  # nothing below 1e-2 after correction: "not related"
MIN_COMMON_ANCHORS = 16
NULL_RATE = 0.05  # share of units an independent model may match by convergent learning (see docstring)
ROW_BLOCK = 2048  # units of A compared at a time: bounds the similarity matrix to 2048 × n_B floats


@dataclass(frozen=True)
class LayerEvidence:
    """Result of one block pair."""

    layer_a: int
    layer_b: int
    units: int
    agreements: int
    chance: float  # agreement rate under the null (max of hub-corrected chance and NULL_RATE)
    log10_p: float

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return {
            "layer_a": self.layer_a,
            "layer_b": self.layer_b,
            "units": self.units,
            "agreements": self.agreements,
            "match_fraction": round(self.agreements / self.units, 4),
            "null_fraction": round(self.chance, 6),
            "log10_p": round(self.log10_p, 2),
        }


@dataclass(frozen=True)
class TokenizerEvidence:
    """Vocabulary and merges overlap: reported beside the weight evidence, never instead of it."""

    identical_vocab: bool
    vocab_jaccard: float
    merges_jaccard: float | None
    statement: str

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Comparison:
    """The verdict for one pair of models, with the evidence behind it."""

    a: str
    b: str
    verdict: str  # "related" | "not related" | "inconclusive"
    score: float | None  # best block pair's match fraction (0..1); None when inconclusive
    log10_p: float | None  # Bonferroni-corrected, the false-positive rate at this score
    reason: str
    tests: int
    evidence_layers: tuple[LayerEvidence, ...]
    tokenizer: TokenizerEvidence

    @property
    def p_value(self) -> float | None:
        """The corrected p-value (may underflow to 0.0; ``log10_p`` keeps the magnitude)."""
        return None if self.log10_p is None else 10.0**self.log10_p

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (the ``--json`` output)."""
        return {
            "a": self.a,
            "b": self.b,
            "verdict": self.verdict,
            "score": None if self.score is None else round(self.score, 4),
            "log10_p": None if self.log10_p is None else round(self.log10_p, 2),
            "false_positive_rate": self.p_value,
            "reason": self.reason,
            "tests": self.tests,
            "layers": [e.to_json() for e in self.evidence_layers],
            "tokenizer": self.tokenizer.to_json(),
        }


def log10_binom_sf(k: int, n: int, p: float) -> float:
    """log10 P(X >= k) for X ~ Binomial(n, p), summed in log space so it never underflows."""
    if k <= 0 or p >= 1.0:
        return 0.0
    if k > n:
        return -math.inf
    p = max(p, 1e-300)
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [
        base - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq for j in range(k, n + 1)
    ]
    top = max(terms)
    total = top + math.log(sum(math.exp(t - top) for t in terms))
    return min(0.0, total / math.log(10))


def _prepare(sig: np.ndarray, cols: np.ndarray) -> np.ndarray:
    x = sig[:, cols].astype(np.float32) * (CLIP / 127)
    x -= x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return np.asarray(x / n, dtype=np.float32)


def match_layer(
    up_a: np.ndarray, down_a: np.ndarray, up_b: np.ndarray, down_b: np.ndarray
) -> tuple[int, float]:
    """Agreements between the up- and down-pairings of A's units into B's, and the chance rate."""
    n_b = up_b.shape[0]
    best_up = np.empty(up_a.shape[0], dtype=np.int64)
    best_down = np.empty(up_a.shape[0], dtype=np.int64)
    for s in range(0, up_a.shape[0], ROW_BLOCK):
        best_up[s : s + ROW_BLOCK] = np.argmax(up_a[s : s + ROW_BLOCK] @ up_b.T, axis=1)
        best_down[s : s + ROW_BLOCK] = np.argmax(down_a[s : s + ROW_BLOCK] @ down_b.T, axis=1)
    k = int(np.sum(best_up == best_down))
    f_up = np.bincount(best_up, minlength=n_b) / len(best_up)
    f_down = np.bincount(best_down, minlength=n_b) / len(best_down)
    return k, float(np.dot(f_up, f_down))


def _jaccard(a: list[int], b: list[int]) -> float:
    """Bottom-k estimate of |A∩B| / |A∪B| from two sketches."""
    if not a or not b:
        return 0.0
    union = sorted(set(a) | set(b))[:SKETCH_K]
    sa, sb = set(a), set(b)
    return sum(1 for h in union if h in sa and h in sb) / len(union)


def tokenizer_evidence(ta: dict[str, Any], tb: dict[str, Any]) -> TokenizerEvidence:
    """Compare two tokenizer summaries from fingerprints."""
    if not ta.get("vocab_size") or not tb.get("vocab_size"):
        return TokenizerEvidence(False, 0.0, None, "no tokenizer in one of the models")
    same = ta.get("vocab_sha256") == tb.get("vocab_sha256")
    vj = 1.0 if same else _jaccard(ta.get("vocab_sketch", []), tb.get("vocab_sketch", []))
    mj = (
        _jaccard(ta["merges_sketch"], tb["merges_sketch"])
        if ta.get("merges_sketch") and tb.get("merges_sketch")
        else None
    )
    if same:
        text = "identical vocabulary: consistent with derivation, but tokenizers are copied freely"
    elif vj > 0.8:
        text = f"vocabulary overlap {vj:.0%}: shared or extended tokenizer"
    else:
        text = f"vocabulary overlap {vj:.0%}: different tokenizers"
    return TokenizerEvidence(same, round(vj, 4), None if mj is None else round(mj, 4), text)


def compare(a: Fingerprint, b: Fingerprint) -> Comparison:
    """Decide whether B derives from A (or both from one base), with a calibrated false-positive rate."""
    tok = tokenizer_evidence(a.tokenizer, b.tokenizer)

    def inconclusive(reason: str) -> Comparison:
        return Comparison(a.source, b.source, "inconclusive", None, None, reason, 0, (), tok)

    if a.arch.mlp != b.arch.mlp:
        return inconclusive(
            f"architectures differ: {a.arch.family} has a {a.arch.mlp} MLP, "
            f"{b.arch.family} a {b.arch.mlp} one; no derivation keeps weights across that"
        )
    common = [x for x in a.anchors if x in b.anchors]
    if len(common) < MIN_COMMON_ANCHORS:
        return inconclusive(
            f"only {len(common)} anchor tokens in common (need {MIN_COMMON_ANCHORS}); "
            "the vocabularies are too different to align the weights"
        )
    ca = np.array([a.anchors.index(x) for x in common])
    cb = np.array([b.anchors.index(x) for x in common])
    la = {s.layer: s for s in a.layers}
    lb = {s.layer: s for s in b.layers}
    if a.arch.n_layers == b.arch.n_layers and set(la) == set(lb):
        pairs = [(x, x) for x in sorted(la)]
    else:  # depths differ (e.g. pruned layers): try every block pair and pay for it in the correction
        pairs = [(x, y) for x in sorted(la) for y in sorted(lb)]
    prepared_a = {x: (_prepare(la[x].up, ca), _prepare(la[x].down, ca)) for x in la}
    prepared_b = {y: (_prepare(lb[y].up, cb), _prepare(lb[y].down, cb)) for y in lb}
    results = []
    for x, y in pairs:
        ua, da = prepared_a[x]
        k, p0 = match_layer(ua, da, *prepared_b[y])
        rate = max(p0, NULL_RATE)
        results.append(LayerEvidence(x, y, ua.shape[0], k, rate, log10_binom_sf(k, ua.shape[0], rate)))
    tests = len(results)
    correction = math.log10(tests)
    best = min(results, key=lambda r: (r.log10_p, -r.agreements / r.units))
    log10_p = min(0.0, best.log10_p + correction)
    score = best.agreements / best.units
    carrying = tuple(r for r in results if r.log10_p + correction <= RELATED_LOG10_P)
    if log10_p <= RELATED_LOG10_P:
        verdict = "related"
        reason = (
            f"{len(carrying)} of {tests} block pairs match unit for unit (best: {score:.0%} of units "
            f"vs {best.chance:.0%} under the null)"
        )
    elif log10_p > UNRELATED_LOG10_P:
        verdict = "not related"
        reason = f"no block pair matches beyond chance (best {score:.1%} vs {best.chance:.0%} under the null)"
    else:
        verdict = "inconclusive"
        reason = f"weak evidence only (best block pair {score:.1%} vs {best.chance:.0%} under the null)"
    shown = carrying if carrying else (best,)
    return Comparison(a.source, b.source, verdict, score, log10_p, reason, tests, shown, tok)
