"""``bastion catalog``: list, show (with ancestry), identify and recommend from the provenance catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.catalog import load_catalog
from bastion.catalog.identify import identify
from bastion.catalog.recommend import TASKS, recommend
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, err, out
from bastion.policy import Organisation

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
        "--org", help="organisation.toml with denied_countries and trusted_signers (default: bundled)."
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
        out.print(f"licences along the lineage: [bold]{'; '.join(anc.licenses)}[/]")
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
    path: Annotated[Path, typer.Argument(help="A .gguf file or a Hugging Face model folder.")],
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Match an artifact to catalog entries from what its files say, with a confidence (0-100)."""
    result = identify(path, load_catalog(catalog))

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
        organisation=Organisation.load(org),
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
