"""What a policy costs: which evaluated models the policy would admit, from the catalog and Cedar.

Each run's model is identified from its weights file (``bastion.catalog.identify``) or named by the
operator; the admission decision then assumes what admission itself would establish for a model the
organisation chose to run — vet ``pass`` and the organisation's signature — exactly as
``bastion catalog recommend`` does. The report plots capability against that verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.catalog import identify, load_catalog
from bastion.errors import BastionError, NotFound
from bastion.evals.records import RunRecord
from bastion.policy import ArtifactAttributes, Organisation, admission_decision, load_policy


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


def _identity(run: RunRecord, named: Mapping[str, str]) -> str | None:
    for key, name in named.items():
        if run.id == key or run.id.endswith(key):
            return name
    path = (run.target.get("detail") or {}).get("path")
    if isinstance(path, str) and Path(path).exists():
        try:
            best = identify(Path(path)).best
        except BastionError:
            return None
        return best.name if best else None
    return None


def admissibility(
    runs: Sequence[RunRecord],
    policy: str | Path,
    organisation: Organisation | None = None,
    named: Mapping[str, str] | None = None,
) -> list[Admissibility]:
    """The policy's verdict on each run's model (``named`` maps run ids to catalog names)."""
    source = load_policy(policy)
    org = organisation if organisation is not None else Organisation.load()
    catalog = load_catalog()
    out = []
    for run in runs:
        name = _identity(run, named or {})
        if name is None:
            out.append(Admissibility(run.id, None, None, ("not identified in the catalog",), source.origin))
            continue
        try:
            attrs = ArtifactAttributes.from_catalog(
                name,
                catalog,
                vet_verdict="pass",
                signer=(org.trusted_signers or ("",))[0],
                match_confidence=100,
            )
        except (KeyError, BastionError) as exc:
            raise NotFound(f"{name!r} is not in the catalog", hint="See 'bastion catalog list'.") from exc
        decision = admission_decision(attrs, source, org)
        out.append(
            Admissibility(
                run.id, name, decision.allowed, tuple(r.id for r in decision.reasons), source.origin
            )
        )
    return out
