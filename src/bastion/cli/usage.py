"""``bastion usage``: requests and tokens by key, group or model, from the gateway's usage store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.keys import KeyStore
from bastion.quota import UsageStore
from bastion.quota.report import By, summarise


def register(app: typer.Typer) -> None:
    """Add the ``usage`` command to ``app``."""

    @app.command("usage")
    def usage(
        by: Annotated[str, typer.Option("--by", help="Sum by key, group or model.")] = "key",
        since: Annotated[str | None, typer.Option("--since", help="First day (YYYY-MM-DD), UTC.")] = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Requests and tokens the gateway served, by key, group or model (kept when quotas are on)."""
        if by not in ("key", "group", "model"):
            raise typer.BadParameter("--by must be key, group or model")
        settings = load_settings(config)
        store, keys = UsageStore(settings.store.target()), KeyStore(settings.store.target())
        try:
            rows = store.daily(since)
            names = {k.id: (k.name, k.groups) for k in keys.list(include_revoked=True)}
        finally:
            store.close()
            keys.close()
        by_: By = by  # type: ignore[assignment]
        lines = summarise(rows, by_, names)

        def human() -> None:
            table = Table(by, "requests", "tokens in", "tokens out")
            for line in lines:
                table.add_row(line.name, f"{line.requests:,}", f"{line.tokens_in:,}", f"{line.tokens_out:,}")
            out.print(table)

        emit({"by": by, "since": since, "lines": [line.to_json() for line in lines]}, as_json, human)
