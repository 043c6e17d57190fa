"""``bastion init``: make a consistent home in one step, then say what to run next."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bastion.bundled import data_home
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, out
from bastion.home import DEFAULT_DENIED, init_home

STYLE = {"created": "green", "kept": "yellow", "replaced": "magenta"}


def register(app: typer.Typer) -> None:
    """Add the ``init`` command to ``app``."""

    @app.command("init")
    def init_cmd(
        home: Annotated[
            Path | None, typer.Option("--home", help="Where to make the home (default: $BASTION_HOME).")
        ] = None,
        org_name: Annotated[
            str | None, typer.Option("--org-name", help="The organisation's name (asked on a terminal).")
        ] = None,
        country: Annotated[
            str | None, typer.Option("--country", help="The organisation's ISO 3166 country, e.g. FR.")
        ] = None,
        denied_countries: Annotated[
            str | None,
            typer.Option(
                "--denied-countries",
                help="Comma-separated ISO codes refused anywhere in a lineage "
                f"(default {','.join(DEFAULT_DENIED)}).",
            ),
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(
                "--port",
                envvar="BASTION_SERVER__PORT",
                help="Gateway port (default: 8080 or the next free one).",
            ),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Replace an existing organisation key and rewrite the files.")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Make a home: organisation key, organisation.toml, audit log and a bastion.toml that agree."""
        ask = sys.stdin.isatty() and sys.stdout.isatty() and not as_json
        if org_name is None:
            org_name = (
                typer.prompt("Organisation name", default="my-organisation") if ask else "my-organisation"
            )
        if country is None:
            country = (
                typer.prompt("Organisation country (ISO code, blank for none)", default="") if ask else ""
            )
        if denied_countries is None:
            denied_countries = (
                typer.prompt("Countries refused in any lineage", default=",".join(DEFAULT_DENIED))
                if ask
                else ",".join(DEFAULT_DENIED)
            )
        target = home if home is not None else data_home()
        result = init_home(
            target,
            org_name=org_name,
            country=country.strip().upper(),
            denied_countries=tuple(c.strip().upper() for c in denied_countries.split(",") if c.strip()),
            port=port,
            force=force,
        )
        export = result.home != data_home().expanduser().resolve()
        commands = ([f"export BASTION_HOME={result.home}"] if export else []) + list(result.next_commands)

        def human() -> None:
            for s in result.steps:
                out.print(
                    f"[{STYLE[s.outcome]}]{s.outcome:8s}[/] {s.what:25s} {s.path}"
                    + (f"  ({s.note})" if s.note else "")
                )
            out.print("next:")
            for c in commands:
                out.print(f"  {c}")

        emit({**result.to_json(), "next": commands}, as_json, human)
