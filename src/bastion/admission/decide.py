"""One function decides admission, for real or hypothetically.

``bastion admit``/``import`` decide on what vet, identification, lineage and signing established;
``catalog recommend``, ``policy explain`` and the eval report's policy cost ask "would we admit it"
and assume what admission would establish for a model the organisation chose to run (vet ``pass``,
the organisation's signature). Both go through :func:`decide`, so the answers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.admission.attributes import (
    Facts,
    catalog_attributes,
    derivative_attributes,
    unidentified_attributes,
)
from bastion.catalog import Catalog
from bastion.policy import ArtifactAttributes, Decision, Organisation, PolicySource, admission_decision


@dataclass(frozen=True)
class Derivative:
    """A declared base (``import --base``) and what the weight fingerprint said about the claim."""

    base: str
    lineage_evidence: str
    related_to: str | None = None  # the catalog release the weights are related to, if another


@dataclass(frozen=True)
class Subject:
    """What a decision is about: a catalog identity (or none), or a declared derivative, plus facts."""

    name: str  # the catalog name when identified; else the name it is admitted under
    identified: bool = True
    match_confidence: int = 100
    facts: Facts = Facts()
    derivative: Derivative | None = None

    @classmethod
    def assumed(cls, catalog_name: str, organisation: Organisation) -> Subject:
        """A catalog release as admission would see it: vet pass, signed by the first trusted key."""
        return cls(catalog_name, facts=Facts("pass", (), (organisation.trusted_signers or ("",))[0]))


@dataclass(frozen=True)
class Ruling:
    """The attributes a decision was made on, and the decision."""

    attributes: ArtifactAttributes
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return {"attributes": self.attributes.to_json(), "decision": self.decision.to_json()}


def attributes_of(subject: Subject, catalog: Catalog, organisation: Organisation) -> ArtifactAttributes:
    """The Cedar attributes of ``subject``."""
    if subject.derivative is not None:
        d = subject.derivative
        return derivative_attributes(
            subject.name, d.base, catalog, organisation, subject.facts, d.lineage_evidence, d.related_to
        )
    if subject.identified:
        return catalog_attributes(subject.name, catalog, subject.facts, subject.match_confidence)
    return unidentified_attributes(subject.name, subject.facts)


def decide(
    subject: Subject,
    policy: str | Path | PolicySource,
    organisation: Organisation,
    catalog: Catalog,
) -> Ruling:
    """Cedar's admission decision on ``subject`` under ``policy``, with the attributes it saw."""
    attrs = attributes_of(subject, catalog, organisation)
    return Ruling(attrs, admission_decision(attrs, policy, organisation))
