"""check_lineage: the admission pipeline's question, "is the claimed base the real one?"."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion import bundled
from bastion.errors import NotFound
from bastion.lineage import Fingerprint, ReferenceStore, check_lineage, fingerprint

# The first test here may pay for making the derived models (minutes on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def gemma_fp() -> Fingerprint:
    return fingerprint(bundled.gemma3())


@pytest.fixture
def store(base_fp: Fingerprint, gemma_fp: Fingerprint, tmp_path: Path) -> ReferenceStore:
    s = ReferenceStore(tmp_path / "lineage.db")
    s.add("smollm2-135m", base_fp)
    s.add("gemma3-270m", gemma_fp)
    return s


@pytest.mark.slow
def test_true_claim_is_supported(lineage_models: dict[str, Path], store: ReferenceStore) -> None:
    v = check_lineage(lineage_models["finetuned"], "smollm2-135m", store)
    assert v.claim == "supported" and v.best_match == "smollm2-135m"
    assert v.related_bases == ["smollm2-135m"]
    assert dict(v.others)["gemma3-270m"].verdict == "not related"


@pytest.mark.slow
def test_relabelled_base_is_contradicted_and_the_real_base_named(
    lineage_models: dict[str, Path], store: ReferenceStore
) -> None:
    # A SmolLM2 derivative whose card claims Gemma: the "fine-tune and relabel" fraud.
    v = check_lineage(lineage_models["permuted"], "gemma3-270m", store)
    assert v.claim == "contradicted" and v.best_match == "smollm2-135m"
    assert v.to_json()["related_bases"] == ["smollm2-135m"]


@pytest.mark.slow
def test_independent_model_claiming_a_base_is_unsupported(
    lineage_models: dict[str, Path], store: ReferenceStore
) -> None:
    v = check_lineage(lineage_models["seed-2"], "smollm2-135m", store)
    assert v.claim == "unsupported" and v.best_match is None and v.related_bases == []


def test_unknown_claimed_base_is_not_found_before_any_work(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "lineage.db")
    with pytest.raises(NotFound, match="mistral-7b"):
        check_lineage(tmp_path / "does-not-matter.gguf", "mistral-7b", store)
