"""``bastion db``: the schema of every store, on SQLite or PostgreSQL (``store.url``)."""

from __future__ import annotations

import typer
from rich.table import Table

from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.database import migrate, status

app = typer.Typer(
    help="Database schema: what is applied and pending, per component; apply it.", no_args_is_help=True
)


@app.command("status")
def status_(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Applied and pending migrations per component (keys, registry, quota, withdrawal, audit, evals)."""
    rows = status(load_settings(config))

    def human() -> None:
        table = Table("component", "database", "applied", "pending")
        for r in rows:
            pending = ", ".join(r.pending) or "-"
            if r.unknown:
                pending += f" (unknown to this version: {', '.join(r.unknown)})"
            table.add_row(r.component, r.location, str(len(r.applied)), pending)
        out.print(table)

    pending = sum(len(r.pending) for r in rows)
    emit({"components": [r.to_json() for r in rows], "pending": pending}, as_json, human)


@app.command("migrate")
def migrate_(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Apply every pending migration (stores also do this when they open; run it before starting replicas)."""
    done = migrate(load_settings(config))

    def human() -> None:
        for d in done:
            what = ", ".join(d.applied) if d.applied else "up to date"
            out.print(f"{d.component:<11} {d.location}  {what}")

    emit({"components": [d.to_json() for d in done]}, as_json, human)
