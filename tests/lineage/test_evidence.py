"""Weights as identification evidence: a matching reference lifts confidence, a mismatch sinks it."""

from __future__ import annotations

from pathlib import Path

from bastion import bundled
from bastion.catalog import identify
from bastion.formats import open_artifact
from bastion.lineage import ReferenceStore, WeightEvidence, fingerprint, reference_name


def test_matching_reference_lifts_confidence_above_the_self_declared_cap(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "refs.db")
    store.add(reference_name("SmolLM2-135M-Instruct"), fingerprint(bundled.smollm2()))
    result = identify(open_artifact(bundled.smollm2()), evidence_sources=[WeightEvidence(store)])
    assert result.best is not None and result.best.name == "SmolLM2-135M-Instruct"
    assert result.best.confidence == 100
    assert any(e.kind == "weights" and e.points > 0 for e in result.best.evidence)


def test_weights_that_do_not_match_the_claimed_release_sink_it(tmp_path: Path) -> None:
    # The store says what SmolLM2's weights look like (here: Gemma's, as if the file were a relabelled
    # Gemma); the bundled SmolLM2 file's weights do not match, so its self-declared identity collapses.
    store = ReferenceStore(tmp_path / "refs.db")
    store.add(reference_name("SmolLM2-135M-Instruct"), fingerprint(bundled.gemma3()))
    result = identify(open_artifact(bundled.smollm2()), evidence_sources=[WeightEvidence(store)])
    smol = next(c for c in result.candidates if c.name == "SmolLM2-135M-Instruct")
    assert smol.confidence <= 30
    assert any(e.kind == "weights" and "NOT derived" in e.detail for e in smol.evidence)
