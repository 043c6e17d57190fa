"""The calibration matrix: every derived model related, every unrelated one not, with the gap."""

from __future__ import annotations

import math

import pytest

from bastion import bundled
from bastion.lineage import Comparison, Fingerprint, compare, fingerprint
from bastion.lineage.compare import RELATED_LOG10_P, UNRELATED_LOG10_P, log10_binom_sf
from tests.lineage.lineage_cases import DERIVED, UNRELATED

# The first test here may pay for making the derived models (minutes on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(2400)


def test_binomial_tail_matches_exact_small_cases() -> None:
    # P(X >= 2), X ~ Bin(3, 0.5) = 4/8
    assert math.isclose(log10_binom_sf(2, 3, 0.5), math.log10(0.5))
    # P(X >= 3), X ~ Bin(3, 0.1) = 0.001
    assert math.isclose(log10_binom_sf(3, 3, 0.1), -3.0)
    assert log10_binom_sf(0, 10, 0.3) == 0.0
    # far tail does not underflow to -inf
    assert -2000 < log10_binom_sf(1536, 1536, 0.05) < -1900


@pytest.mark.slow
@pytest.mark.parametrize("name", DERIVED)
def test_derived_model_is_related(name: str, vs_base: dict[str, Comparison]) -> None:
    c = vs_base[name]
    assert c.verdict == "related", c.reason
    assert c.log10_p is not None and c.log10_p <= RELATED_LOG10_P
    assert c.evidence_layers, "a related verdict names the blocks that carry the evidence"


@pytest.mark.slow
@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_model_is_not_related(name: str, vs_base: dict[str, Comparison]) -> None:
    c = vs_base[name]
    assert c.verdict == "not related", c.reason
    assert c.log10_p is not None and c.log10_p > UNRELATED_LOG10_P


@pytest.mark.slow
def test_score_gap_between_derived_and_unrelated_is_wide(vs_base: dict[str, Comparison]) -> None:
    derived = min(vs_base[n].score or 0.0 for n in DERIVED)
    unrelated = max(vs_base[n].score or 0.0 for n in UNRELATED)
    assert derived > 0.5 > 0.05 > unrelated, (derived, unrelated)


@pytest.mark.slow
def test_seed_models_share_the_tokenizer_yet_weights_say_not_related(vs_base: dict[str, Comparison]) -> None:
    c = vs_base["seed-1"]
    assert c.tokenizer.identical_vocab  # the tokenizer alone would wrongly suggest derivation
    assert c.verdict == "not related"


def test_different_mlp_kind_is_inconclusive_with_reason(base_fp: Fingerprint) -> None:
    minilm = fingerprint(bundled.minilm())
    c = compare(base_fp, minilm)
    assert c.verdict == "inconclusive"
    assert c.score is None and c.log10_p is None
    assert "architectures differ" in c.reason and "gated" in c.reason and "plain" in c.reason


def test_too_few_common_anchor_tokens_is_inconclusive(base_fp: Fingerprint) -> None:
    import dataclasses

    stripped = dataclasses.replace(base_fp, anchors=tuple(f"{a}_x" for a in base_fp.anchors))
    c = compare(base_fp, stripped)
    assert c.verdict == "inconclusive" and "anchor tokens in common" in c.reason


def test_a_model_compared_with_itself_is_related(base_fp: Fingerprint) -> None:
    c = compare(base_fp, base_fp)
    assert c.verdict == "related" and c.score == 1.0
    assert c.tokenizer.identical_vocab
