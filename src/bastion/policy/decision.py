"""Admission decisions: an artifact's attributes in, a Cedar decision with the statements that made it out."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from bastion.errors import ConfigError
from bastion.policy.source import PolicySource, load_policy, schema

NAMESPACE = "Bastion"
VERDICTS = ("pass", "warn", "fail", "unknown")


@dataclass(frozen=True)
class Organisation:
    """The organisation's editable lists: countries refused anywhere in a lineage, keys it signs with."""

    denied_countries: tuple[str, ...] = ()
    trusted_signers: tuple[str, ...] = ()
    id: str = "org"
    #: the organisation's name and ISO 3166-1 alpha-2 country: developer of the models it imports
    name: str = ""
    country: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> Organisation:
        """Read ``organisation.toml`` from ``path`` (default: the bundled example)."""
        if path is None:
            text = resources.files("bastion.policy").joinpath("packs", "organisation.toml").read_text("utf-8")
            origin = "organisation.toml (bundled)"
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {path}: {exc.strerror or exc}", hint="Check the path."
                ) from exc
            origin = str(path)
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{origin}: not valid TOML: {exc}", hint="Fix the syntax.") from exc
        unknown = set(raw) - {"denied_countries", "trusted_signers", "name", "country"}
        country = raw.get("country", "")
        bad = [
            c
            for c in [*raw.get("denied_countries", []), *([country] if country != "" else [])]
            if not (isinstance(c, str) and len(c) == 2 and c.isupper())
        ]
        if (
            unknown
            or bad
            or not isinstance(raw.get("name", ""), str)
            or not all(isinstance(s, str) for s in raw.get("trusted_signers", []))
        ):
            raise ConfigError(
                f"{origin}: expected only name, country and denied_countries (ISO 3166 alpha-2 codes) and "
                f"trusted_signers (key ids); unknown keys {sorted(unknown)}, bad country codes {bad}",
                hint="See the bundled bastion/policy/packs/organisation.toml for the format.",
            )
        return cls(
            tuple(raw.get("denied_countries", ())),
            tuple(raw.get("trusted_signers", ())),
            name=raw.get("name", ""),
            country=country,
        )

    def entity(self) -> dict[str, Any]:
        """The Cedar entity for the organisation."""
        return {
            "uid": {"type": f"{NAMESPACE}::Organisation", "id": self.id},
            "attrs": {
                "denied_countries": list(self.denied_countries),
                "trusted_signers": list(self.trusted_signers),
            },
            "parents": [],
        }


@dataclass(frozen=True)
class ArtifactAttributes:
    """What admission knows about an artifact (from vet, identification and signing)."""

    name: str
    developer: str = ""
    developer_country: str = ""
    lineage: tuple[str, ...] = ()
    lineage_countries: tuple[str, ...] = ()
    developed_in: str = ""
    lineage_developed_in: tuple[str, ...] = ()
    license: str = ""
    lineage_licenses: tuple[str, ...] = ()
    license_flags: tuple[str, ...] = ()
    params_millions: int = 0
    active_params_millions: int = 0
    vet_verdict: str = "unknown"
    finding_codes: tuple[str, ...] = ()
    signer: str = ""
    match_confidence: int = 0
    #: what the weights said about a declared base ("not-declared" when none was declared)
    lineage_evidence: str = "not-declared"

    def __post_init__(self) -> None:
        if self.vet_verdict not in VERDICTS:
            raise ValueError(f"vet_verdict must be one of {VERDICTS}, not {self.vet_verdict!r}")
        if not 0 <= self.match_confidence <= 100:
            raise ValueError("match_confidence is a percentage (0-100)")

    def entity(self) -> dict[str, Any]:
        """The Cedar entity for this artifact."""
        attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.to_json().items()}
        return {
            "uid": {"type": f"{NAMESPACE}::Artifact", "id": self.name or "unidentified"},
            "attrs": attrs,
            "parents": [],
        }

    def to_json(self) -> dict[str, Any]:
        """The attributes as a plain mapping (the Cedar entity's attributes)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Reason:
    """A policy statement that decided a request: its id, effect and line in the policy file."""

    id: str
    effect: str
    line: int

    def to_json(self) -> dict[str, Any]:
        """The reason as a plain mapping."""
        return {"id": self.id, "effect": self.effect, "line": self.line}


@dataclass(frozen=True)
class Decision:
    """A Cedar decision and why: the statements that decided it, or why nothing permitted it."""

    allowed: bool
    action: str
    reasons: tuple[Reason, ...] = ()
    errors: tuple[str, ...] = ()
    policy: str = ""
    note: str = ""
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The decision as a plain mapping."""
        return {
            "decision": "allow" if self.allowed else "deny",
            "action": self.action,
            "policy": self.policy,
            "reasons": [r.to_json() for r in self.reasons],
            "errors": list(self.errors),
            "note": self.note,
            "inputs": self.inputs,
        }


def evaluate(
    source: PolicySource,
    policy_set: cedarpy.PolicySet,
    request: dict[str, Any],
    entities: list[dict[str, Any]],
    action: str,
    inputs: dict[str, Any] | None = None,
) -> Decision:
    """Run one Cedar request and turn the answer into a Decision that cites statements by id and line."""
    result = cedarpy.is_authorized(request, policy_set, entities, schema())
    reasons = []
    for pid in result.diagnostics.reasons:
        stmt = source.by_policy_id(pid)
        reasons.append(Reason(stmt.label, stmt.effect, stmt.line) if stmt else Reason(pid, "?", 0))
    errors = tuple(str(e) for e in result.diagnostics.errors)
    # Fail closed: Cedar skips a statement that errors, so an erroring forbid would silently not deny.
    allowed = result.allowed and not errors
    if allowed:
        note = "permitted by the statements listed"
    elif errors:
        note = "denied because a statement could not be evaluated (fail closed)"
    elif reasons:
        note = "denied by the forbid statements listed"
    else:
        note = "denied: no permit statement matched (Cedar denies by default)"
    return Decision(allowed, action, tuple(reasons), errors, source.origin, note, inputs or {})


def admission_decision(
    artifact: ArtifactAttributes, policy: str | Path | PolicySource, organisation: Organisation | None = None
) -> Decision:
    """Decide whether ``artifact`` may be admitted under ``policy`` (pack name, file or loaded source)."""
    source = policy if isinstance(policy, PolicySource) else load_policy(policy)
    org = organisation if organisation is not None else Organisation.load()
    policy_set = _policy_set(source)
    request = {
        "principal": {"type": f"{NAMESPACE}::Organisation", "id": org.id},
        "action": {"type": f"{NAMESPACE}::Action", "id": "admit"},
        "resource": {"type": f"{NAMESPACE}::Artifact", "id": artifact.name or "unidentified"},
        "context": {},
    }
    return evaluate(
        source, policy_set, request, [org.entity(), artifact.entity()], "admit", artifact.to_json()
    )


def _policy_set(source: PolicySource) -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_str("\n".join(s.text for s in source.statements))
