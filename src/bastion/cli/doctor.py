"""``bastion doctor``: is this installation ready to serve?"""

from __future__ import annotations

import typer
from rich.table import Table

from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import Settings, load_settings
from bastion.doctor import run_checks
from bastion.errors import BastionError, ConfigError

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command to ``app``."""

    @app.command("doctor")
    def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """Check everything 'serve' needs: keys, audit log, admitted and unchanged models, policy, port."""
        settings: Settings | None = None
        error: BastionError | None = None
        try:
            settings = load_settings(config)
        except BastionError as exc:
            error = exc
        checks = run_checks(settings, error)
        failed = [c for c in checks if c.status == "fail"]

        def human() -> None:
            table = Table("check", "status", "detail", "fix")
            for column in table.columns:
                column.overflow = "fold"  # paths and hints are the point: never cut them with an ellipsis
            for c in checks:
                table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", c.detail, c.fix)
            out.print(table)
            if failed:
                out.print(f"[bold red]{len(failed)} problem(s)[/] to fix before 'bastion serve'.")
            else:
                out.print("[green]ready[/]: 'bastion serve' has what it needs.")

        emit({"ok": not failed, "checks": [c.to_json() for c in checks]}, as_json, human)
        if failed:
            raise typer.Exit(ConfigError.exit_code)
