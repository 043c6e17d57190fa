"""Admission: the artifact flow from a file on disk to a signed row in the registry.

    vet (no code execution) -> hash (manifest) -> identify (catalog) -> decide (Cedar)
        -> sign the manifest with the organisation key -> record (one transaction)

Nothing is signed or recorded unless every step before it succeeded; a denial raises PolicyDenied
citing the Cedar statements that decided it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.catalog import EvidenceSource, Identification, identify, load_catalog
from bastion.errors import NotFound, PolicyDenied, VerdictFail
from bastion.hashing import Manifest, file_digest, manifest_of
from bastion.policy import ArtifactAttributes, Decision, Organisation, admission_decision, load_policy
from bastion.registry.store import Admission, Registry
from bastion.signing import key_hint, load_private_key, sign_manifest
from bastion.vet import VetReport, build_bom, vet_path


@dataclass(frozen=True)
class Assessment:
    """Everything admission learned about an artifact before signing it."""

    path: Path
    report: VetReport
    manifest: Manifest
    identity: Identification
    attributes: ArtifactAttributes
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "verdict": self.report.verdict.value,
            "findings": [f.to_json() for f in self.report.findings],
            "root_digest": self.manifest.root_digest(),
            "identity": self.identity.to_json(),
            "attributes": self.attributes.to_json(),
            "decision": self.decision.to_json(),
        }


def weights_digest(path: Path) -> str:
    """The digest the gateway reports for a model: the GGUF's (or, for a folder, its weights file's)."""
    if path.is_file():
        return file_digest(path)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return file_digest(path / name)
    raise NotFound(f"{path} has no weights file (model.safetensors)", hint="Point at the model folder.")


def _weight_evidence() -> list[EvidenceSource]:
    """Weight fingerprints as identification evidence, when the local reference store has any."""
    from bastion.lineage import ReferenceStore, WeightEvidence
    from bastion.lineage.references import default_path

    if not default_path().exists():
        return []
    store = ReferenceStore()
    return [WeightEvidence(store)] if store.list() else []


def assess(
    path: Path, policy: str | Path, organisation: Organisation, signer: str, strict: bool = False
) -> Assessment:
    """Vet, hash, identify and decide; no side effects. VerdictFail as soon as vet says ``fail``."""
    report = vet_path(path, strict=strict)
    if report.verdict.value == "fail":
        codes = ", ".join(sorted({f.code for f in report.findings if f.severity.value == "fail"}))
        raise VerdictFail(
            f"{path} failed vet ({codes}); it cannot be admitted",
            hint=f"Run 'bastion vet {path}' for the findings.",
        )
    manifest = manifest_of(path)
    catalog = load_catalog()
    identity = identify(path, catalog, evidence_sources=_weight_evidence())
    best = identity.best
    findings = tuple(sorted({f.code for f in report.findings}))
    if best is not None:
        attrs = ArtifactAttributes.from_catalog(
            best.name, catalog, vet_verdict=report.verdict.value, finding_codes=findings, signer=signer,
            match_confidence=best.confidence,
        )
    else:  # unidentified: an unknown lineage, which strict policies refuse
        attrs = ArtifactAttributes(
            name=path.name, vet_verdict=report.verdict.value, finding_codes=findings, signer=signer
        )
    decision = admission_decision(attrs, load_policy(policy), organisation)
    return Assessment(path, report, manifest, identity, attrs, decision)


def admit(
    registry: Registry,
    path: Path,
    name: str,
    policy: str | Path,
    key_path: Path,
    organisation: Organisation,
    actor: str,
    strict: bool = False,
) -> tuple[Admission, Assessment]:
    """Admit the model at ``path`` as ``name`` under ``policy``, signed with the key at ``key_path``."""
    private_key = load_private_key(key_path)
    signer = key_hint(private_key.public_key())
    assessment = assess(path, policy, organisation, signer, strict)
    if not assessment.decision.allowed:
        cited = ", ".join(f"{r.id} (line {r.line})" for r in assessment.decision.reasons)
        raise PolicyDenied(
            f"policy {assessment.decision.policy} denies admitting {path} as {name!r}: "
            + (cited or "no permit statement matched"),
            hint=f"See 'bastion policy explain {path} --policy {policy}' for every input of the decision.",
        )
    bundle = sign_manifest(assessment.manifest, private_key)
    admission = registry.record(
        name=name,
        path=str(path.resolve()),
        weights_digest=weights_digest(path),
        root_digest=assessment.manifest.root_digest(),
        signature=bundle,
        signer=signer,
        verdict=assessment.report.verdict.value,
        findings=[f.to_json() for f in assessment.report.findings],
        bom=build_bom(assessment.report),
        identity=assessment.identity.to_json(),
        decision=assessment.decision.to_json(),
        policy=assessment.decision.policy,
        admitted_by=actor,
    )
    return admission, assessment
