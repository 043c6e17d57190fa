"""``bastion admit``, ``bastion import`` and ``bastion models``: admission, and what is admitted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion import bundled
from bastion.audit import AdminAudit, os_actor, record_admin, require_audit
from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, err, out
from bastion.config import Settings, load_settings
from bastion.errors import UsageError
from bastion.lineage import local_weight_evidence
from bastion.policy import Organisation
from bastion.registry import Declaration, Registry, admit, admitted_in_audit_log, open_registry

app = typer.Typer(help="Admitted models: list, show, revoke.", no_args_is_help=True)


def _open(config: Path | None) -> tuple[Settings, Registry]:
    settings = load_settings(config)
    return settings, open_registry(settings)


NameOpt = Annotated[str, typer.Option("--name", "-n", help="Name the gateway will serve it under.")]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="Organisation private key (PEM) that signs (default: registry.signing_key)."),
]
PolicyOpt = Annotated[
    str,
    typer.Option("--policy", "-p", help="Policy pack (permissive, enterprise, sovereign-strict) or file."),
]
OrgOpt = Annotated[
    Path | None,
    typer.Option(
        "--org",
        help="organisation.toml: name, country, denied countries, trusted signers (default: "
        "policy.organisation, else $BASTION_HOME/organisation.toml, else bundled).",
    ),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Strict vet (remote code and warnings fail).")]


def register(root: typer.Typer) -> None:
    """Add ``admit`` and the ``models`` group to the root app."""

    @root.command("admit")
    def admit_cmd(
        path: Annotated[
            str, typer.Argument(help="Model file or folder (or bundled:smollm2 ...).", metavar="PATH")
        ],
        name: NameOpt,
        key: KeyOpt = None,
        policy: PolicyOpt = "sovereign-strict",
        org: OrgOpt = None,
        strict: StrictOpt = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Vet, hash, identify, decide (Cedar), sign and record a model; a denial cites the statements."""
        _admit(path, name, key, policy, org, strict, config, as_json, None)

    @root.command("import")
    def import_cmd(
        path: Annotated[
            str, typer.Argument(help="The organisation's own model file or folder.", metavar="PATH")
        ],
        name: NameOpt,
        key: KeyOpt = None,
        base: Annotated[
            str | None,
            typer.Option(
                "--base",
                help="Catalog release it was derived from (fine-tune); the claim is tested on the weights.",
            ),
        ] = None,
        developer: Annotated[
            str | None, typer.Option("--developer", help="Developer (default: organisation.toml name).")
        ] = None,
        country: Annotated[
            str | None,
            typer.Option("--country", help="Developer country, ISO 3166-1 alpha-2 (default: the org's)."),
        ] = None,
        policy: PolicyOpt = "sovereign-strict",
        org: OrgOpt = None,
        strict: StrictOpt = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Import an in-house model: vet, identify, test the declared base on its weights, decide, sign."""
        if country is not None and not (len(country) == 2 and country.isalpha() and country.isupper()):
            raise UsageError(
                f"--country {country!r} is not an ISO 3166-1 alpha-2 code", hint="For example --country GB."
            )
        if base is None and (developer or country):
            raise UsageError(
                "--developer and --country describe a derivative: give its --base too",
                hint="Without --base the model is identified against the catalog as 'bastion admit' does.",
            )
        declared = Declaration(base, developer, country) if base is not None else None
        _admit(path, name, key, policy, org, strict, config, as_json, declared)

    root.add_typer(app, name="models")


def _admit(
    path: str,
    name: str,
    key: Path | None,
    policy: str,
    org: Path | None,
    strict: bool,
    config: Path | None,
    as_json: bool,
    declared: Declaration | None,
) -> None:
    settings, registry = _open(config)
    if settings.audit.enabled:
        require_audit(settings.audit)  # an admission that cannot be recorded is not made
    model = bundled.resolve(path)
    organisation = Organisation.load(org if org is not None else settings.organisation_file())
    key = key if key is not None else settings.registry.signing_key
    with err.status(f"admitting {model} as {name!r} under {policy} ..."):
        admission, assessment = admit(
            registry, model, name, policy, key, organisation, os_actor(),
            audit=AdminAudit(settings.audit), evidence_sources=local_weight_evidence(),
            declared=declared, strict=strict,
        )

    def human() -> None:
        out.print(f"[green]admitted[/] {name!r} <- {admission.path}")
        out.print(f"  weights   {admission.weights_digest}")
        out.print(
            f"  identity  {admission.identity.get('claimed_identity')} "
            f"(confidence {admission.identity.get('confidence')})"
        )
        if assessment.lineage is not None:
            lv = assessment.lineage
            out.print(f"  lineage   declared base {lv.claimed_base}: {lv.claim} by the weights")
        out.print(f"  vet       {admission.verdict} ({len(admission.findings)} findings)")
        reasons = ", ".join(r["id"] for r in assessment.decision.to_json()["reasons"])
        out.print(f"  policy    {admission.policy}: allow ({reasons})")
        out.print(f"  signed by {admission.signer}")

    emit({"admitted": admission.to_json(), "assessment": assessment.to_json()}, as_json, human)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked admissions.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List admitted models."""
    rows = _open(config)[1].list(include_revoked=all_)

    def human() -> None:
        table = Table("name", "identity", "verdict", "policy", "weights", "admitted", "revoked")
        for a in rows:
            table.add_row(
                a.name,
                str(a.identity.get("claimed_identity")),
                a.verdict,
                a.policy,
                a.weights_digest[:19] + "...",
                a.admitted_at,
                a.revoked_at or "",
            )
        out.print(table)

    emit([a.to_json() for a in rows], as_json, human)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Admitted model name.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Everything recorded about an admitted model: decision, findings, identity, signature, BOM."""
    admission = _open(config)[1].get(name)
    doc = admission.to_json(full=True)

    def human() -> None:
        for k in (
            "name",
            "path",
            "weights_digest",
            "root_digest",
            "signer",
            "verdict",
            "policy",
            "admitted_at",
            "admitted_by",
        ):
            out.print(f"{k:15s} {doc[k]}")
        out.print(
            f"{'identity':15s} {doc['identity'].get('claimed_identity')} "
            f"(confidence {doc['identity'].get('confidence')})"
        )
        for r in doc["decision"].get("reasons", []):
            out.print(f"{'decided by':15s} {r['id']} ({r['effect']}, line {r['line']})")
        for f in doc["findings"]:
            out.print(f"{'finding':15s} {f.get('severity')} {f.get('code')}: {f.get('message')}")

    emit(doc, as_json, human)


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Admitted model name.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the registry and the audit log).")
    ] = "",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an admission and its bytes under every name; a running gateway refuses them at once."""
    settings, registry = _open(config)
    if settings.audit.enabled:
        require_audit(settings.audit)
    registry.get(name)  # NotFound (with a suggestion) before asking anything
    if not yes and sys.stdin.isatty() and not as_json:
        # Revocation cannot be undone (only a new admission brings the model back): ask a person first.
        typer.confirm(
            f"Revoke {name!r}? The running gateway stops serving it on its next request", abort=True
        )
    # The row's digest columns are not signed: revoke what the audit log saw admitted as this name too.
    also = admitted_in_audit_log(settings.audit.target(), name) if settings.audit.enabled else set()
    admission = registry.revoke(name, os_actor(), reason, also=also)
    # The audit entry is the revocation's witness: the registry treats every digest it names as
    # revoked even if the database row is later deleted (registry/witness.py).
    record_admin(
        settings.audit,
        "model.revoke",
        before_digest=admission.weights_digest,
        details={"name": name, "reason": reason, "root_digest": admission.root_digest,
                 "admission_id": admission.id, "digests": sorted(also)},
    )
    twins = [
        a.name
        for a in registry.list(include_revoked=True)
        if a.name != name
        and a.weights_digest == admission.weights_digest
        and a.revoked_at == admission.revoked_at
    ]

    def human() -> None:
        out.print(f"revoked {name!r} at {admission.revoked_at}")
        if twins:
            out.print(f"  the same bytes were admitted as {', '.join(map(repr, twins))}: revoked too")

    emit({**admission.to_json(), "also_revoked": twins}, as_json, human)
