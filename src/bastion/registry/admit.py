"""Admission: the artifact flow from a file on disk to a signed row in the registry.

    read once (formats.open_artifact: headers parsed, every byte hashed)
        -> vet (the parsed headers) -> identify (catalog + evidence sources)
        -> lineage (a declared base tested on the weights) -> decide (Cedar, admission.decide)
        -> check the files are still the ones read -> sign the manifest -> record + audit (one boundary)

The weights are read once: vet, identification and lineage work on the :class:`Artifact`, and the
manifest signed is the one computed in that read, so the bytes vetted are the bytes signed. Nothing is
signed or recorded unless every step before it succeeded; a denial raises PolicyDenied citing the
Cedar statements that decided it, and every refusal is written to the audit sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.admission import Derivative, Facts, Ruling, Subject, decide
from bastion.audit import AuditSink
from bastion.catalog import Catalog, EvidenceSource, Identification, identify, load_catalog
from bastion.errors import BastionError, IntegrityError, NotFound, PolicyDenied, VerdictFail
from bastion.formats import Artifact, open_artifact
from bastion.lineage import LineageVerdict, ReferenceStore, check_lineage, reference_name
from bastion.policy import ArtifactAttributes, Decision, Organisation
from bastion.registry.store import Admission, Registry
from bastion.signing import key_hint, load_private_key, sign_manifest
from bastion.vet import VetReport, build_bom, vet_artifact


@dataclass(frozen=True)
class Declaration:
    """What the operator states about an in-house model (``bastion import --base ...``)."""

    base: str  # catalog release it was derived from
    developer: str | None = None  # default: the organisation's name
    country: str | None = None  # default: the organisation's country


@dataclass(frozen=True)
class Assessment:
    """Everything admission learned about an artifact before signing it."""

    artifact: Artifact
    report: VetReport
    identity: Identification
    lineage: LineageVerdict | None
    ruling: Ruling

    @property
    def path(self) -> Path:
        """Where the artifact was read from."""
        return self.artifact.path

    @property
    def attributes(self) -> ArtifactAttributes:
        """The attributes Cedar decided on."""
        return self.ruling.attributes

    @property
    def decision(self) -> Decision:
        """The Cedar decision."""
        return self.ruling.decision

    def identity_record(self) -> dict[str, Any]:
        """The identity stored in the registry: the catalog match, and for a derivative its lineage test."""
        doc = self.identity.to_json()
        if self.lineage is not None:
            doc.update(
                claimed_identity=self.attributes.name,
                confidence=self.attributes.match_confidence,
                declared_base=self.lineage.claimed_base,
                lineage=self.lineage.to_json(),
            )
        return doc

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (``--json``)."""
        return {
            "path": str(self.path),
            "verdict": self.report.verdict.value,
            "findings": [f.to_json() for f in self.report.findings],
            "root_digest": self.artifact.manifest.root_digest(),
            "weights_digest": self.artifact.weights_digest(),
            "identity": self.identity_record(),
            "attributes": self.attributes.to_json(),
            "decision": self.decision.to_json(),
        }


def _lineage(
    artifact: Artifact, base: str, catalog: Catalog, store: ReferenceStore
) -> tuple[LineageVerdict, Derivative]:
    """Test "derived from ``base``" on the weights, against the nearest ancestor with a reference."""
    have = {info.name for info in store.list()}
    chain = catalog.ancestry(base).chain
    ref = next((e.name for e in chain if reference_name(e.name) in have), None)
    if ref is None:
        raise NotFound(
            f"no lineage reference for {base!r} or any of its ancestors, so the claim cannot be tested",
            hint=f"Add one: 'bastion lineage add-reference {reference_name(base)} PATH-OF-THE-RELEASE'.",
        )
    verdict = check_lineage(artifact, reference_name(ref), store)
    related = None
    if verdict.claim == "contradicted" and verdict.best_match is not None:
        found = catalog.find(verdict.best_match)
        related = found.name if found is not None else None
    return verdict, Derivative(chain[0].name, verdict.claim, related)


def assess(
    artifact: Artifact,
    name: str,
    policy: str | Path,
    organisation: Organisation,
    signer: str,
    *,
    evidence_sources: Sequence[EvidenceSource] = (),
    declared: Declaration | None = None,
    references: ReferenceStore | None = None,
    strict: bool = False,
    catalog: Catalog | None = None,
) -> Assessment:
    """Vet, identify, test a declared lineage and decide; no side effects. VerdictFail on a vet ``fail``."""
    report = vet_artifact(artifact, strict=strict)
    if report.verdict.value == "fail":
        codes = ", ".join(sorted({f.code for f in report.findings if f.severity.value == "fail"}))
        raise VerdictFail(
            f"{artifact.path} failed vet ({codes}); it cannot be admitted",
            hint=f"Run 'bastion vet {artifact.path}' for the findings.",
        )
    cat = catalog if catalog is not None else load_catalog()
    identity = identify(artifact, cat, evidence_sources=evidence_sources)
    facts = Facts(report.verdict.value, tuple(sorted({f.code for f in report.findings})), signer)
    lineage: LineageVerdict | None = None
    if declared is not None:
        store = references if references is not None else ReferenceStore.default()
        lineage, derivative = _lineage(artifact, declared.base, cat, store)
        org = Organisation(
            organisation.denied_countries,
            organisation.trusted_signers,
            organisation.id,
            name=declared.developer or organisation.name,
            country=declared.country or organisation.country,
        )
        ruling = decide(Subject(name, facts=facts, derivative=derivative), policy, org, cat)
    elif identity.best is not None:
        best = identity.best
        subject = Subject(best.name, match_confidence=best.confidence, facts=facts)
        ruling = decide(subject, policy, organisation, cat)
    else:  # unidentified: an unknown lineage, which strict policies refuse
        ruling = decide(Subject(name, identified=False, facts=facts), policy, organisation, cat)
    return Assessment(artifact, report, identity, lineage, ruling)


def _bytes_vetted_are_bytes_signed(assessment: Assessment) -> None:
    """Refuse unless every digest vet reported is the manifest's and no file changed since the read."""
    artifact = assessment.artifact
    manifest = {f.name if artifact.is_folder else f.path.name: f.digest for f in artifact.files}
    vetted = {r.path: r.digest for r in assessment.report.files}
    differ = sorted(p for p, d in vetted.items() if manifest.get(p) != d)
    if differ:
        raise IntegrityError(
            f"{artifact.path}: the digests vet read differ from the manifest to be signed "
            f"({', '.join(differ)})",
            hint="Admit again; nothing was signed or recorded.",
        )
    artifact.check_unchanged()


def admit(
    registry: Registry,
    source: Path | Artifact,
    name: str,
    policy: str | Path,
    key_path: Path,
    organisation: Organisation,
    actor: str,
    *,
    audit: AuditSink,
    evidence_sources: Sequence[EvidenceSource] = (),
    declared: Declaration | None = None,
    references: ReferenceStore | None = None,
    strict: bool = False,
) -> tuple[Admission, Assessment]:
    """Admit the model at ``source`` as ``name`` under ``policy``, signed with the key at ``key_path``.

    ``audit`` receives ``model.admit`` inside the registry transaction (if it cannot be written, the row
    is rolled back) or ``model.admit.refused`` with the error; ``declared`` makes it an import of an
    in-house derivative whose base is tested on the weights against ``references``.
    """
    where = source.path if isinstance(source, Artifact) else source
    try:
        private_key = load_private_key(key_path)
        signer = key_hint(private_key.public_key())
        artifact = source if isinstance(source, Artifact) else open_artifact(source)
        assessment = assess(
            artifact, name, policy, organisation, signer, evidence_sources=evidence_sources,
            declared=declared, references=references, strict=strict,
        )
        if not assessment.decision.allowed:
            cited = ", ".join(f"{r.id} (line {r.line})" for r in assessment.decision.reasons)
            why = ""
            lv = assessment.lineage
            if lv is not None and lv.claim != "supported":
                why = f"; lineage evidence: the claimed base {lv.claimed_base!r} is {lv.claim} by the weights"
                why += f" (they derive from {lv.best_match!r})" if lv.best_match else ""
            raise PolicyDenied(
                f"policy {assessment.decision.policy} denies admitting {where} as {name!r}: "
                + (cited or "no permit statement matched") + why,
                hint=f"See 'bastion policy explain {where} --policy {policy}' for every input of the "
                "decision.",
            )
        _bytes_vetted_are_bytes_signed(assessment)
        bundle = sign_manifest(artifact.manifest, private_key)
        digest = artifact.weights_digest()
        details = {
            "name": name,
            "path": str(where.resolve()),
            "policy": assessment.decision.policy,
            "signer": signer,
            "root_digest": artifact.manifest.root_digest(),
            "decision": assessment.decision.to_json(),
        }
        if assessment.lineage is not None:
            details["declared_base"] = assessment.lineage.claimed_base
            details["lineage_evidence"] = assessment.lineage.claim
        admission = registry.record(
            name=name,
            path=str(where.resolve()),
            weights_digest=digest,
            root_digest=artifact.manifest.root_digest(),
            signature=bundle,
            signer=signer,
            verdict=assessment.report.verdict.value,
            findings=[f.to_json() for f in assessment.report.findings],
            bom=build_bom(assessment.report),
            identity=assessment.identity_record(),
            decision=assessment.decision.to_json(),
            policy=assessment.decision.policy,
            admitted_by=actor,
            before_commit=lambda: audit.record("model.admit", details, after_digest=digest),
        )
    except BastionError as exc:
        audit.record(
            "model.admit.refused",
            {"name": name, "path": str(where), "policy": str(policy), "error": exc.message},
        )
        raise
    return admission, assessment
