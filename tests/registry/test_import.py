"""bastion import: an in-house derivative whose declared base is tested on its weights.

Real models: the fine-tune of SmolLM2 that the lineage tests build (scripts/lineage_models.py: a CPU
fine-tune with AdamW, cached), the bundled Gemma 3 270M, references fingerprinted from the bundled
GGUFs. Real Cedar, real signatures, a real audit log.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from bastion import bundled
from bastion.audit import AdminAudit, open_store
from bastion.audit.store import Filters
from bastion.config import AuditSettings
from bastion.errors import PolicyDenied
from bastion.lineage import ReferenceStore, fingerprint, reference_name
from bastion.policy import Organisation
from bastion.registry import Declaration, Registry, admit
from bastion.signing import generate_key_pair
from bastion.store import Target
from tests.registry.conftest import audit_log

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

SMOL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def finetuned() -> Path:
    from lineage_models import make_all

    return make_all(log=lambda msg: print(msg, file=sys.stderr))["finetuned"]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> ReferenceStore:
    store = ReferenceStore(tmp_path_factory.mktemp("refs") / "lineage.db")
    store.add(reference_name(SMOL), fingerprint(bundled.smollm2()))
    store.add(reference_name("Gemma 3 270M"), fingerprint(bundled.gemma3()))
    return store


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Organisation, AuditSettings]:
    pair = generate_key_pair(tmp_path / "org")
    org = Organisation(("CN", "RU"), (pair.key_hint,), name="Acme Defence", country="GB")
    return pair.private_key, org, audit_log(tmp_path / "audit")


def _admin_entries(settings: AuditSettings) -> list[dict[str, object]]:
    store = open_store(settings.path)
    try:
        return [json.loads(r.leaf) for r in store.find(Filters(kind="admin"), 100)]
    finally:
        store.close()


def test_an_in_house_finetune_of_smollm2_is_admitted_under_sovereign_strict(store_target: Target, tmp_path: Path, finetuned: Path, references: ReferenceStore, setup: tuple[Path, Organisation, AuditSettings]) -> None:
    key, org, audit = setup
    model = shutil.copyfile(finetuned, tmp_path / "acme-assistant.gguf")
    registry = Registry(store_target)
    admission, assessment = admit(
        registry, model, "acme-assistant", "sovereign-strict", key, org, "tester",
        audit=AdminAudit(audit), declared=Declaration(SMOL), references=references,
    )
    attrs = assessment.attributes
    assert (attrs.name, attrs.developer, attrs.developer_country) == ("acme-assistant", "Acme Defence", "GB")
    assert attrs.lineage == ("acme-assistant", SMOL, "SmolLM2-135M")
    assert attrs.lineage_evidence == "supported" and attrs.match_confidence == 100
    assert [r.id for r in assessment.decision.reasons] == ["sovereign.admit-identified-signed-clean"]
    assert admission.identity["declared_base"] == SMOL and admission.identity["lineage"]["claim"] == "supported"
    assert registry.get("acme-assistant").weights_digest == admission.weights_digest
    entries = [e for e in _admin_entries(audit) if "model.admit" in json.dumps(e)]
    assert len(entries) == 1 and "acme-assistant" in json.dumps(entries[0])


def test_gemma_weights_declared_as_a_smollm2_finetune_are_denied_citing_the_lineage(store_target: Target, tmp_path: Path, references: ReferenceStore, setup: tuple[Path, Organisation, AuditSettings]) -> None:
    key, org, audit = setup
    model = shutil.copyfile(bundled.gemma3(), tmp_path / "acme-assistant.gguf")
    registry = Registry(store_target)
    with pytest.raises(PolicyDenied) as denied:
        admit(
            registry, model, "acme-assistant", "sovereign-strict", key, org, "tester",
            audit=AdminAudit(audit), declared=Declaration(SMOL), references=references,
        )
    message = denied.value.message
    assert "sovereign.declared-base-not-supported" in message
    assert f"the claimed base {reference_name(SMOL)!r} is contradicted by the weights" in message
    assert "they derive from 'Gemma-3-270M'" in message
    assert registry.list(include_revoked=True) == []
    refused = [e for e in _admin_entries(audit) if "model.admit.refused" in json.dumps(e)]
    assert len(refused) == 1 and "declared-base-not-supported" in json.dumps(refused[0])


def test_the_permissive_pack_also_refuses_a_contradicted_lineage(store_target: Target, references: ReferenceStore, setup: tuple[Path, Organisation, AuditSettings]) -> None:
    key, org, audit = setup
    with pytest.raises(PolicyDenied, match="permissive.declared-base-not-supported"):
        admit(
            Registry(store_target), bundled.gemma3(), "x", "permissive", key, org, "tester",
            audit=AdminAudit(audit), declared=Declaration(SMOL), references=references,
        )
