"""``bastion vet`` and ``bastion bom``: one verdict on a model file or folder, and its CycloneDX AI-BOM."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from bastion.bundled import resolve
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, err, out
from bastion.errors import VerdictFail
from bastion.vet import VetReport, build_bom, vet_path, write_bom

PathArg = Annotated[
    str,
    typer.Argument(
        help="A model file (GGUF, safetensors, .bin/.pt/.pth/.ckpt, pickle) "
        "or a Hugging Face-style model folder; bundled:smollm2, bundled:gemma3 and bundled:minilm "
        "name the bundled models."
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="Fail (not warn) on remote code, symlinks and pickle imports outside the allowlist."
    ),
]
_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "info": "cyan"}


def _vet(path: Path, strict: bool, show_progress: bool) -> VetReport:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    total = sum(p.stat().st_size for p in files if not p.is_symlink())
    if not show_progress or total < 64 << 20:
        return vet_path(path, strict)
    with Progress(
        TextColumn("vet {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(path.name, total=total)
        return vet_path(path, strict, progress=lambda name, n: bar.update(task, advance=n, description=name))


def vet(path: PathArg, strict: StrictOpt = False, as_json: JsonOpt = False) -> None:
    """Read a model without executing it; print findings and a verdict (pass, warn or fail).

    Exit status: 0 for pass or warn, 12 for fail, 3 for input that is not a readable model.
    """
    report = _vet(resolve(path), strict, show_progress=not as_json)

    def human() -> None:
        for f in report.findings:
            c = _COLOURS[f.severity.value]
            where = f" @ {f.location}" if f.location else ""
            out.print(f"[{c}]{f.severity.value.upper():4}[/]  [bold]{f.code}[/]  {f.file}{where}")
            out.print(f"      {f.message}")
        for fr in report.files:
            if fr.format not in ("other", "empty"):
                out.print(f"  {fr.path}  [dim]{fr.format}, {fr.size:,} bytes, {fr.digest or ''}[/]")
        v = report.verdict.value
        out.print(
            f"verdict: [bold {_COLOURS[v]}]{v}[/] ({len(report.findings)} findings, "
            f"{len(report.files)} files{', strict' if report.strict else ''})"
        )

    emit(report.to_json(), as_json, human)
    if report.verdict.value == "fail":
        raise typer.Exit(VerdictFail.exit_code)


def bom(
    path: PathArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the CycloneDX 1.6 JSON ('-' for stdout).")
    ],
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a CycloneDX 1.6 AI-BOM: model component, file hashes, licence, model card, vet findings.

    The BOM is written whatever the verdict (it records it); the exit status is still 12 for fail.
    """
    report = _vet(resolve(path), strict, show_progress=not as_json)
    if str(output) == "-":
        # The BOM is the one document on stdout (with or without --json); the summary goes to stderr.
        sys.stdout.write(json.dumps(build_bom(report), indent=2) + "\n")
        sys.stdout.flush()
        err.print(f"CycloneDX 1.6, {len(report.files)} files, verdict {report.verdict.value}")
        if report.verdict.value == "fail":
            raise typer.Exit(VerdictFail.exit_code)
        return
    write_bom(report, output)
    summary = {
        "output": str(output),
        "verdict": report.verdict.value,
        "files": len(report.files),
        "findings": len(report.findings),
    }
    emit(
        summary,
        as_json,
        lambda: out.print(
            f"wrote {output} (CycloneDX 1.6, {len(report.files)} files, verdict {report.verdict.value})"
        ),
    )
    if report.verdict.value == "fail":
        raise typer.Exit(VerdictFail.exit_code)


def register(app: typer.Typer) -> None:
    """Add ``vet`` and ``bom`` to the top-level app."""
    app.command("vet")(vet)
    app.command("bom")(bom)
