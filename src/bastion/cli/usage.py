"""``bastion usage``: requests, tokens and cost by key, group or model, from the gateway's usage store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.keys import KeyStore
from bastion.quota import UsageStore
from bastion.quota.cost import usage_cost
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
        """Requests, tokens and cost the gateway served, by key, group or model (kept when quotas are on).

        Cost: local models at [cost] hardware_usd_per_hour over the time spent answering, and what the
        same tokens would have cost on each cloud model of the pinned price table.
        """
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
        cost = usage_cost(settings, rows)

        def human() -> None:
            table = Table(by, "requests", "tokens in", "tokens out", "seconds")
            for line in lines:
                table.add_row(line.name, f"{line.requests:,}", f"{line.tokens_in:,}", f"{line.tokens_out:,}",
                              f"{line.seconds:,.1f}")
            out.print(table)
            local = cost["local"]
            rate = "no local traffic"
            if local["tokens_per_s"] is not None:
                rate = f"{local['tokens_per_s']} tokens/s out"
            price = "no hardware price ([cost] hardware_usd_per_hour)"
            if local["usd"] is not None:
                price = (f"${local['usd']:.6f} at ${local['usd_per_hour']}/h"
                         f" (${local['usd_per_mtok']}/1M tokens)")
            out.print(f"local: {local['seconds']} s answering, {rate}; {price}")
            cloud = Table("same tokens on", "provider", "USD", "source",
                          title=f"cloud list prices, table of {cost['prices_date']}")
            for row in cost["cloud"]:
                cloud.add_row(row["model"], row["provider"], f"{row['usd']:.6f}", row["source_kind"])
            out.print(cloud)

        doc = {"by": by, "since": since, "lines": [line.to_json() for line in lines], "cost": cost}
        emit(doc, as_json, human)

