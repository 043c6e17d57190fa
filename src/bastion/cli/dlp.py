"""``bastion dlp scan``: classification markings, personal data and secrets in a document or a log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.dlp import Scanner
from bastion.errors import DataLossBlocked, UnusableInput

app = typer.Typer(
    help="Data-loss prevention: find markings, personal data and secrets.", no_args_is_help=True
)
MAX_BYTES = 64 << 20  # a scan is linear in the text; beyond this, split the file


def _read(source: str) -> tuple[str, str]:
    name = "<stdin>" if source == "-" else source
    try:
        data = sys.stdin.buffer.read(MAX_BYTES + 1) if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UnusableInput(f"cannot read {name}: {exc.strerror or exc}", hint="Check the path.") from exc
    if len(data) > MAX_BYTES:
        raise UnusableInput(f"{name} is larger than 64 MiB", hint="Split it and scan the parts.")
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableInput(
            f"{name} is not UTF-8 text (byte {exc.start})",
            hint="Convert it to UTF-8 text first (e.g. pdftotext, iconv).",
        ) from exc


def _line_col(text: str, offset: int, starts: list[int]) -> tuple[int, int]:
    import bisect

    line = bisect.bisect_right(starts, offset) - 1
    return line + 1, offset - starts[line] + 1


@app.command("scan")
def scan_command(
    source: Annotated[str, typer.Argument(help="A UTF-8 text file, or - for standard input.")],
    config: ConfigOpt = None,
    fail: Annotated[
        bool, typer.Option("--fail", help="Exit with status 14 when anything is found (for scripts and CI).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Report every marking, personal identifier and secret in SOURCE by type and position (never its value).

    Organisation-defined markings and phone regions come from the [dlp] section of the configuration.
    """
    name, text = _read(source)
    findings = Scanner.from_settings(load_settings(config).dlp).scan(text)
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    rows: list[dict[str, Any]] = []
    for f in findings.items:
        line, col = _line_col(text, f.start, starts)
        rows.append({**f.to_json(), "line": line, "column": col})
    doc = {"source": name, **findings.summary(), "findings": rows, "not_detected": list(findings.skipped)}

    def human() -> None:
        for r in rows:
            extra = f"  level {r['level']} ({r['scheme']})" if r["category"] == "marking" else ""
            caveats = f"  caveats {', '.join(r['caveats'])}" if r.get("caveats") else ""
            out.print(
                f"{name}:{r['line']}:{r['column']}  [bold]{r['type']}[/]  {r['category']}{extra}{caveats}"
            )
        counts = ", ".join(f"{k} {v}" for k, v in findings.counts().items()) or "nothing found"
        out.print(f"{name}: {counts}")
        out.print(f"[dim]not detected by this scanner: {', '.join(findings.skipped)}[/]")

    emit(doc, as_json, human)
    if fail and findings:
        raise typer.Exit(DataLossBlocked.exit_code)
