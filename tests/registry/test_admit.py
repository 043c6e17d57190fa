"""Admission on real artifacts: vet -> hash -> identify -> Cedar -> sign -> record."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from scripts.crafted import gguf_claiming

from bastion import bundled
from bastion.audit import AdminAudit
from bastion.errors import IntegrityError, NotFound, PolicyDenied, UsageError, VerdictFail
from bastion.policy import Organisation
from bastion.registry import Registry, admit, verify_for_serving
from bastion.signing import generate_key_pair, load_public_key
from bastion.store import Target
from tests.registry.conftest import audit_log


@pytest.fixture()
def sink(tmp_path: Path) -> AdminAudit:
    """Admission's audit sink over a real, initialised audit log (as 'bastion audit init' makes it)."""
    return AdminAudit(audit_log(tmp_path / "audit"))


@pytest.fixture()
def org(tmp_path: Path) -> tuple[Path, Organisation]:
    pair = generate_key_pair(tmp_path / "org")
    return pair.private_key, Organisation(("CN", "RU"), (pair.key_hint,))


def test_smollm2_is_admitted_under_sovereign_strict_signed_and_recorded(store_target: Target, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    key, organisation = org
    registry = Registry(store_target)
    admission, assessment = admit(
        registry, bundled.smollm2(), "smollm2", "sovereign-strict", key, organisation, "tester", audit=sink
    )
    assert admission.weights_digest == "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert admission.identity["claimed_identity"] == "SmolLM2-135M-Instruct"
    assert [r.id for r in assessment.decision.reasons] == ["sovereign.admit-identified-signed-clean"]
    assert admission.bom["specVersion"] == "1.6"
    assert registry.get("smollm2").root_digest == admission.root_digest
    verified = verify_for_serving(registry, "smollm2", bundled.smollm2(), load_public_key(key.with_suffix(".pub.pem")))
    assert verified.id == admission.id


def test_a_model_whose_base_comes_from_a_denied_country_is_refused(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    # The file claims to be DeepSeek-R1-Distill-Llama-8B: developer CN, base Llama 3.1 8B (US).
    crafted = gguf_claiming(tmp_path / "distill.gguf", "DeepSeek-R1-Distill-Llama", "8B")
    key, organisation = org
    registry = Registry(store_target)
    with pytest.raises(PolicyDenied, match="sovereign.denied-country-in-lineage"):
        admit(registry, crafted, "distill", "sovereign-strict", key, organisation, "tester", audit=sink)
    assert registry.list(include_revoked=True) == []  # nothing half-written


def test_lineage_is_transitive_a_us_developer_on_a_chinese_base_is_refused(
    tmp_path: Path, org: tuple[Path, Organisation]
) -> None:
    from bastion.admission import Subject, decide
    from bastion.catalog import load_catalog

    catalog = load_catalog()
    us_on_cn = next(e for e in catalog.entries if e.country == "US" and "CN" in catalog.ancestry(e.name).countries)
    decision = decide(Subject.assumed(us_on_cn.name, org[1]), "sovereign-strict", org[1], catalog).decision
    assert not decision.allowed
    assert "sovereign.denied-country-in-lineage" in [r.id for r in decision.reasons]


def test_a_key_the_organisation_does_not_trust_cannot_admit(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    stranger = generate_key_pair(tmp_path / "stranger")
    with pytest.raises(PolicyDenied, match="no permit statement matched"):
        admit(Registry(store_target), bundled.smollm2(), "smollm2", "sovereign-strict",
              stranger.private_key, org[1], "tester", audit=sink)


def test_a_pickle_with_hidden_code_fails_vet_and_is_not_admitted(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "model" / "pytorch_model.bin"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps(Payload()))
    registry = Registry(store_target)
    with pytest.raises(VerdictFail, match="failed vet"):
        admit(registry, evil.parent, "evil", "permissive", org[0], org[1], "tester", audit=sink)
    assert not (tmp_path / "pwned").exists()
    assert registry.list(include_revoked=True) == []


def test_names_are_unique_until_revoked_and_revoked_bytes_stay_revoked(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    registry = Registry(store_target)
    first, _ = admit(registry, bundled.smollm2(), "m", "permissive", org[0], org[1], "tester", audit=sink)
    with pytest.raises(UsageError, match="already admitted"):
        admit(registry, bundled.smollm2(), "m", "permissive", org[0], org[1], "tester", audit=sink)
    registry.revoke("m", "tester", "superseded")
    with pytest.raises(NotFound):
        registry.get("m")
    # The same bytes cannot come back under any name: a revocation is final for the bytes.
    with pytest.raises(PolicyDenied, match="were revoked as 'm'.*superseded"):
        admit(registry, bundled.smollm2(), "m", "permissive", org[0], org[1], "tester", audit=sink)
    other = tmp_path / "other.gguf"
    other.write_bytes(bundled.smollm2().read_bytes()[:-1] + b"\x00")  # another build: last byte differs
    second, _ = admit(registry, other, "m", "permissive", org[0], org[1], "tester", audit=sink)
    assert registry.get("m").id == second.id != first.id
    assert len(registry.list(include_revoked=True)) == 2


def test_bytes_changed_after_admission_are_caught_at_load(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    copy = tmp_path / "smol.gguf"
    copy.write_bytes(bundled.smollm2().read_bytes())
    registry = Registry(store_target)
    admit(registry, copy, "smol", "permissive", org[0], org[1], "tester", audit=sink)
    with copy.open("r+b") as fh:
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(IntegrityError, match="changed after admission"):
        verify_for_serving(registry, "smol", copy, load_public_key(org[0].with_suffix(".pub.pem")))


def test_a_sharded_safetensors_folder_is_admitted_and_verifies_for_serving(store_target: Target, tmp_path: Path, org: tuple[Path, Organisation], sink: AdminAudit) -> None:
    from scripts.crafted import sharded_copy

    from bastion.embeddings import MiniLMEmbedder

    folder = sharded_copy(bundled.minilm(), tmp_path / "minilm-sharded")
    registry = Registry(store_target)
    admission, assessment = admit(registry, folder, "minilm", "permissive", org[0], org[1], "tester", audit=sink)
    assert admission.weights_digest.startswith("sha256-folder:")
    vetted = {r.path for r in assessment.report.files}
    assert {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} <= vetted
    verify_for_serving(registry, "minilm", folder, load_public_key(org[0].with_suffix(".pub.pem")))
    # what the embeddings backend serves is known by the digest the registry recorded
    assert MiniLMEmbedder.load(folder, expected_digest=admission.weights_digest).digest == admission.weights_digest
