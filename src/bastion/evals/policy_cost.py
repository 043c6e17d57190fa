"""What a policy costs: which evaluated models the policy would admit, from the catalog and Cedar.

Each run's model is identified from its weights file as admission identifies it (the file read once
by ``formats.open_artifact``, ``catalog.identify`` with the same weight evidence sources) or named by
the operator; the decision then comes from ``admission.decide`` assuming what admission itself would
establish for a model the organisation chose to run — vet ``pass`` and the organisation's signature —
exactly as ``bastion catalog recommend`` does. The report plots capability against that verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.admission import Subject, decide
from bastion.catalog import Catalog, EvidenceSource, identify, load_catalog
from bastion.errors import BastionError, NotFound
from bastion.evals.records import RunRecord
from bastion.formats import open_artifact
from bastion.policy import Organisation, load_policy


@dataclass(frozen=True)
class Admissibility:
    """One run's model, its catalog identity and whether ``policy`` would admit it (None: unknown)."""

    run_id: str
    identity: str | None
    allowed: bool | None
    reasons: tuple[str, ...]
    policy: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "identity": self.identity,
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "policy": self.policy,
        }


def _identity(
    run: RunRecord, named: Mapping[str, str], catalog: Catalog, evidence: Sequence[EvidenceSource]
) -> str | None:
    for key, name in named.items():
        if run.id == key or run.id.endswith(key):
            return name
    path = (run.target.get("detail") or {}).get("path")
    if isinstance(path, str) and Path(path).exists():
        try:
            best = identify(open_artifact(Path(path)), catalog, evidence_sources=evidence).best
        except BastionError:
            return None
        return best.name if best else None
    return None


def admissibility(
    runs: Sequence[RunRecord],
    policy: str | Path,
    organisation: Organisation | None = None,
    named: Mapping[str, str] | None = None,
    evidence_sources: Sequence[EvidenceSource] = (),
) -> list[Admissibility]:
    """The policy's verdict on each run's model (``named`` maps run ids to catalog names).

    ``evidence_sources`` are the identification evidence admission uses (weight fingerprints), so the
    report and ``bastion admit`` identify a file alike.
    """
    source = load_policy(policy)
    org = organisation if organisation is not None else Organisation.load()
    catalog = load_catalog()
    out = []
    for run in runs:
        name = _identity(run, named or {}, catalog, evidence_sources)
        if name is None:
            out.append(Admissibility(run.id, None, None, ("not identified in the catalog",), source.origin))
            continue
        try:
            decision = decide(Subject.assumed(name, org), source, org, catalog).decision
        except (KeyError, NotFound) as exc:
            raise NotFound(f"{name!r} is not in the catalog", hint="See 'bastion catalog list'.") from exc
        out.append(
            Admissibility(
                run.id, name, decision.allowed, tuple(r.id for r in decision.reasons), source.origin
            )
        )
    return out
