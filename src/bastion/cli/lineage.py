"""``bastion lineage``: weight fingerprints, pairwise comparison and claimed-base checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.bundled import resolve
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, err, out
from bastion.errors import UsageError
from bastion.lineage import (
    Comparison,
    ReferenceStore,
    check_lineage,
    fingerprint,
    load_or_fingerprint,
    save,
)

app = typer.Typer(
    help="Lineage: is this model derived from base X? Decided from the weights, with a false-positive rate.",
    no_args_is_help=True,
)

ModelArg = Annotated[
    str, typer.Argument(help="GGUF file, safetensors folder, fingerprint .json, or bundled:NAME.")
]


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} blocks"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _verdict_style(verdict: str) -> str:
    return {
        "related": "bold red",
        "not related": "bold green",
        "supported": "bold green",
        "contradicted": "bold red",
    }.get(verdict, "bold yellow")


def _print_comparison(c: Comparison, title: str) -> None:
    out.print(f"{title}: [{_verdict_style(c.verdict)}]{c.verdict}[/]  ({c.a} vs {c.b})")
    if c.score is not None:
        fpr = "< 1e-300" if c.log10_p is not None and c.log10_p < -300 else f"{c.p_value:.2g}"
        out.print(
            f"  score {c.score:.3f}  false-positive rate {fpr} (log10 p = {c.log10_p:.1f}, "
            f"{c.tests} block pairs tested)"
        )
    out.print(f"  weights: {c.reason}")
    out.print(f"  tokenizer: {c.tokenizer.statement}")
    if c.evidence_layers:
        table = Table("block A", "block B", "units", "matched", "null rate", "log10 p")
        for e in c.evidence_layers:
            table.add_row(
                str(e.layer_a),
                str(e.layer_b),
                str(e.units),
                f"{e.agreements / e.units:.1%}",
                f"{e.chance:.1%}",
                f"{e.log10_p:.1f}",
            )
        out.print(table)


@app.command("fingerprint")
def fingerprint_cmd(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the fingerprint JSON.")],
    as_json: JsonOpt = False,
) -> None:
    """Fingerprint a model's weights and tokenizer into a small JSON file (a few MB)."""
    path = resolve(model)
    with _progress(f"fingerprinting {path.name}") as progress:
        fp = fingerprint(path, progress)
    save(fp, output)
    summary = {
        "output": str(output),
        "source": fp.source,
        "sha256": fp.sha256,
        "arch": fp.arch.to_json(),
        "anchors": len(fp.anchors),
        "blocks": [s.layer for s in fp.layers],
        "bytes": output.stat().st_size,
    }

    def human() -> None:
        a = fp.arch
        out.print(f"wrote {output} ({summary['bytes']:,} bytes)")
        out.print(
            f"  {a.family}: {a.n_layers} blocks, d_model {a.d_model}, {a.d_ffn} {a.mlp}-MLP units, "
            f"vocab {a.vocab_size}; {len(fp.anchors)} anchor tokens; blocks kept {summary['blocks']}"
        )

    emit(summary, as_json, human)


@app.command("compare")
def compare_cmd(a: ModelArg, b: ModelArg, as_json: JsonOpt = False) -> None:
    """Is B derived from A (or both from one base)? related / not related / inconclusive, with the FPR.

    The false-positive rate is the chance that a model trained independently of A scores this high.
    """
    from bastion.lineage import compare

    with _progress("fingerprinting") as progress:
        fa = load_or_fingerprint(resolve(a), progress)
        fb = load_or_fingerprint(resolve(b), progress)
    result = compare(fa, fb)
    emit(result.to_json(), as_json, lambda: _print_comparison(result, "lineage"))


@app.command("check")
def check_cmd(
    model: ModelArg,
    claims: Annotated[str, typer.Option("--claims", help="The claim to test, as base=REFERENCE_NAME.")],
    as_json: JsonOpt = False,
) -> None:
    """Test a model's claimed base against the reference store, and report its best match.

    The claim comes out supported (related to the claimed base), contradicted (not related to it but
    related to another reference, named as best match), unsupported (related to no reference) or
    inconclusive (the weights cannot decide, with the reason). Exit status 0 in all four cases.
    """
    key, sep, name = claims.partition("=")
    if key != "base" or not sep or not name:
        raise UsageError(f"--claims {claims!r} is not understood", hint="Write --claims base=NAME.")
    store = ReferenceStore.default()
    try:
        store.info(name)  # an unknown base fails fast, before any progress bar is drawn
        with _progress("fingerprinting") as progress:
            verdict = check_lineage(resolve(model), name, store, progress=progress)
    finally:
        store.close()

    def human() -> None:
        out.print(f"claim base={name}: [{_verdict_style(verdict.claim)}]{verdict.claim}[/]")
        if verdict.best_match and verdict.best_match != name:
            out.print(f"best match: [bold]{verdict.best_match}[/]")
        _print_comparison(verdict.claimed, f"vs {name}")
        for other, c in verdict.others:
            out.print(
                f"vs {other}: [{_verdict_style(c.verdict)}]{c.verdict}[/] "
                f"(score {c.score if c.score is None else round(c.score, 3)}; {c.reason})"
            )

    emit(verdict.to_json(), as_json, human)


@app.command("add-reference")
def add_reference_cmd(
    model: ModelArg,
    name: Annotated[str, typer.Option("--name", "-n", help="Reference name, e.g. smollm2-135m.")],
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a reference of that name.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Store a base model's fingerprint under a name, for 'check' to compare against."""
    with _progress("fingerprinting") as progress:
        fp = load_or_fingerprint(resolve(model), progress)
    store = ReferenceStore.default()
    try:
        info = store.add(name, fp, replace=replace)
    finally:
        store.close()
    emit(
        info.to_json(),
        as_json,
        lambda: out.print(f"reference {info.name!r} added ({info.family}, {info.source})"),
    )


@app.command("references")
def references_cmd(as_json: JsonOpt = False) -> None:
    """List the stored reference fingerprints."""
    store = ReferenceStore.default()
    try:
        refs = store.list()
    finally:
        store.close()

    def human() -> None:
        table = Table("name", "family", "source", "sha256", "added")
        for r in refs:
            table.add_row(r.name, r.family, r.source, r.sha256[:23], r.added_at)
        out.print(table)

    emit([r.to_json() for r in refs], as_json, human)
