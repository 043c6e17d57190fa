"""``bastion catalog``: list, show (with ancestry), identify, recommend; sign-update and update."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.admission.recommend import TASKS, recommend
from bastion.audit import record_admin, require_audit
from bastion.catalog import identify, load_catalog
from bastion.catalog.update import (
    UpdateDiff,
    apply_update,
    plan_update,
    sign_update,
    state_digest,
    verify_update,
)
from bastion.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelPathArg,
    PasswordEnvOpt,
    load_organisation,
    password_from_env,
)
from bastion.cli.render import emit, err, out
from bastion.config import load_settings
from bastion.formats import open_artifact
from bastion.signing import load_private_key, load_public_key
from bastion.signing.keys import read_small, write_atomic

app = typer.Typer(
    help="The provenance catalog: who made each open-weight model, where, under which licence, from what.",
    no_args_is_help=True,
)

CatalogOpt = Annotated[
    Path | None, typer.Option("--catalog", help="Catalog TOML to use instead of the bundled one.")
]
OrgOpt = Annotated[
    Path | None,
    typer.Option(
        "--org",
        help="organisation.toml with denied_countries and trusted_signers (default: policy.organisation, "
        "else $BASTION_HOME/organisation.toml, else bundled).",
    ),
]


def _params(b: float) -> str:
    return f"{b * 1000:g}M" if b < 1 else f"{b:g}B"


@app.command("list")
def list_(
    country: Annotated[
        str | None, typer.Option("--country", help="Developer country, ISO 3166 alpha-2 (e.g. FR).")
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="Licence name or SPDX id (substring match).")
    ] = None,
    max_params: Annotated[
        float | None, typer.Option("--max-params", help="Largest total size, billions.")
    ] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List catalog entries, optionally filtered by country, licence and size."""
    entries = load_catalog(catalog).select(country=country, license=license, max_params_b=max_params)

    def human() -> None:
        table = Table(
            "name", "developer", "country", "released", "params", "licence", "base model", "verified"
        )
        for e in entries:
            size = _params(e.params_b) + (f" ({_params(e.active_b)} active)" if e.active_params_b else "")
            table.add_row(
                e.name,
                e.developer,
                e.country,
                e.released,
                size,
                e.license,
                e.base_model or "",
                "yes" if e.verified else "[yellow]no[/]",
            )
        out.print(table)
        out.print(f"{len(entries)} entries")

    emit([e.to_json() for e in entries], as_json, human)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Catalog name, alias or Hugging Face repo id.")],
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry with its full ancestry chain and every country and licence along it."""
    cat = load_catalog(catalog)
    entry = cat.get(name)
    anc = cat.ancestry(entry.name)

    def human() -> None:
        out.print(f"[bold]{entry.name}[/]  {entry.developer} ({entry.country}), released {entry.released}")
        size = _params(entry.params_b) + (
            f", {_params(entry.active_b)} active" if entry.active_params_b else ""
        )
        out.print(f"parameters {size}; context {entry.context or 'not stated'}")
        out.print(f"licence {entry.license}; flags: {', '.join(entry.license_flags) or 'none'}")
        if entry.developed_in:
            out.print(f"developed in {entry.developed_in} (headquarters {entry.country})")
        out.print(
            f"source {entry.source}"
            + ("" if entry.verified else "  [yellow](not verified against the card)[/]")
        )
        if entry.note:
            out.print(f"note: {entry.note}")
        table = Table(
            "ancestry",
            "developer",
            "country",
            "licence",
            "relation to its base",
            title="lineage, nearest first",
        )
        for e in anc.chain:
            table.add_row(
                e.name, e.developer, e.country, e.license, e.relation or "(trained from scratch / root)"
            )
        out.print(table)
        out.print(f"countries along the lineage: [bold]{', '.join(anc.countries)}[/]")
        out.print(f"licences in force (own and inherited): [bold]{'; '.join(anc.licenses)}[/]")
        out.print(f"licence flags in force: [bold]{', '.join(anc.license_flags) or 'none'}[/]")
        if entry.citations:
            ct = Table("facts", "source", "quote or section", title="evidence")
            for c in entry.citations:
                ct.add_row(", ".join(c.facts), c.url, c.quote)
            out.print(ct)
        if entry.benchmarks:
            bt = Table(
                "benchmark", "setting", "value", title="published figures (compare only within one setting)"
            )
            for b in entry.benchmarks:
                bt.add_row(b.name, b.setting, f"{b.value:g}")
            out.print(bt)

    emit({"entry": entry.to_json(), "ancestry": anc.to_json()}, as_json, human)


@app.command("identify")
def identify_(
    path: ModelPathArg,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Match an artifact to catalog entries from what its files say, with a confidence (0-100)."""
    result = identify(open_artifact(path), load_catalog(catalog))

    def human() -> None:
        best = result.best
        if best is None:
            out.print(f"{path}: [yellow]no catalog entry matches what the file says[/]")
        else:
            out.print(f"{path}: claims to be [bold]{best.name}[/] (confidence {best.confidence}/100)")
        table = Table("candidate", "confidence", "evidence")
        for c in result.candidates:
            table.add_row(
                c.name, str(c.confidence), "\n".join(f"{e.points:+d} {e.detail}" for e in c.evidence)
            )
        out.print(table)
        out.print("[dim]Self-declared metadata only; confidence is capped at 90 without weight evidence.[/]")

    emit(result.to_json(), as_json, human)


@app.command("recommend")
def recommend_(
    policy: Annotated[
        str,
        typer.Option(
            "--policy", help="Bundled pack (permissive, enterprise, sovereign-strict) or .cedar file."
        ),
    ],
    max_params: Annotated[
        float, typer.Option("--max-params", help="Largest total size you can run, billions.")
    ],
    task: Annotated[
        str, typer.Option("--task", help=f"What the model is for: {', '.join(TASKS)}.")
    ] = "knowledge",
    benchmark: Annotated[
        str | None, typer.Option("--benchmark", help="Rank by this benchmark instead of the task's.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Admissible models shown per group.")] = 3,
    org: OrgOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank the admissible models by benchmark, next to the best refused one: what your policy costs."""
    rec = recommend(
        policy,
        max_params,
        task=task,
        benchmark=benchmark,
        organisation=load_organisation(org),
        catalog=load_catalog(catalog),
    )

    def human() -> None:
        out.print(
            f"policy [bold]{rec.policy}[/], at most {max_params:g}B parameters: "
            f"{rec.admissible_count} catalog models admissible, {rec.refused_count} refused"
        )
        out.print(
            "[dim]Assumes a clean vet and the organisation's signature; figures compared only within "
            "one benchmark + setting.[/]"
        )
        for g in rec.groups:
            table = Table("model", "country", "params", g.benchmark, title=f"{g.benchmark} — {g.setting}")
            for r in g.admissible[:top]:
                table.add_row(r.name, r.country, _params(r.params_b), f"{r.value:g}")
            if g.best_refused:
                r = g.best_refused
                table.add_row(
                    f"[red]{r.name} (refused: {', '.join(r.deciding) or 'no permit'})[/]",
                    r.country,
                    _params(r.params_b),
                    f"[red]{r.value:g}[/]",
                )
            out.print(table)
            if g.gap is not None and g.gap > 0:
                out.print(f"  your policy costs you [bold]{g.gap:g} points of {g.benchmark}[/] ({g.setting})")
            elif g.gap is not None:
                out.print(f"  no cost: the best admissible model leads by {-g.gap:g} points")
        if not rec.groups:
            err.print("[yellow]no catalog figures for these benchmarks within that size[/]")

    emit(rec.to_json(), as_json, human)


@app.command("sign-update")
def sign_update_(
    diff: Annotated[
        Path, typer.Argument(help="TOML with an [update] table (serial, description) and [[model]] rows.")
    ],
    key: Annotated[Path, typer.Option("--key", help="The organisation's private key (PEM).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the signed update.")],
    password_env: PasswordEnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a catalog diff with the organisation's key, after validating every row and its lineage."""
    password = password_from_env(password_env)
    signed = sign_update(diff, load_private_key(key, password))
    write_atomic(output, signed, overwrite=False)
    emit(
        {"signed": str(output), "diff": str(diff)},
        as_json,
        lambda: out.print(f"signed catalog update written to {output}"),
    )


@app.command("update")
def update(
    file: Annotated[
        Path, typer.Argument(help="Signed catalog update (from 'bastion catalog sign-update').")
    ],
    trust: Annotated[
        Path, typer.Option("--trust", help="Public key (PEM) the update must be signed by.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Verify and show the diff; change nothing.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a signed catalog update, show what it changes, and apply it to the overlay atomically."""
    verified = verify_update(read_small(file, "catalog update", 8 << 20), load_public_key(trust), str(file))
    if dry_run:
        diff = plan_update(verified, load_catalog())
    else:
        settings = load_settings(config)
        if settings.audit.enabled:
            require_audit(settings.audit)  # refuse before changing facts that could not be recorded
        before = state_digest()
        diff = apply_update(verified)
        record_admin(
            settings.audit,
            "catalog.update",
            before_digest=before,
            after_digest=state_digest(),
            details={
                "serial": diff.serial,
                "description": diff.description,
                "signer_key_hint": diff.key_hint,
                "sha256": diff.sha256,
                "added": [e.name for e in diff.added],
                "changed": [c.to_json() for c in diff.changed],
            },
        )
    emit(diff.to_json(), as_json, lambda: _show_diff(diff))


def _show_diff(diff: UpdateDiff) -> None:
    verb = "applied" if diff.applied else "would apply (dry run)"
    out.print(
        f"catalog update {diff.serial} ({diff.description}), "
        f"signed by key {diff.key_hint[:16]}...: {verb}"
    )
    if diff.added:
        table = Table("added", "developer", "country", "licence", "verified", "source")
        for e in diff.added:
            table.add_row(e.name, e.developer, e.country, e.license, "yes" if e.verified else "no", e.source)
        out.print(table)
    if diff.changed:
        table = Table("model", "fact", "was", "now", "sources")
        for c in diff.changed:
            table.add_row(c.name, c.field, str(c.old), str(c.new), "\n".join(c.sources))
        out.print(table)
    out.print(
        f"{len(diff.added)} rows added, {len(diff.changed)} facts changed, "
        f"{len(diff.unchanged)} rows unchanged"
    )
