"""Entry point: assembles the command groups and renders every BastionError the same way."""

from __future__ import annotations

import sys
from typing import Annotated

import click
import orjson
import typer

from bastion import __version__
from bastion.cli import (
    audit,
    bundle,
    catalog,
    doctor,
    drill,
    embed,
    evals,
    init,
    keys,
    lineage,
    models,
    policy,
    serve,
    signing,
    usage,
    vet,
    withdraw,
)
from bastion.cli.render import render_error
from bastion.errors import BastionError, UsageError

app = typer.Typer(
    name="bastion",
    help="Sovereign model gateway: know, decide, serve, prove and measure open-weight models offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bastion {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print Bastion's version and exit."),
    ] = False,
) -> None:
    """Sovereign model gateway: know, decide, serve, prove and measure open-weight models offline."""


init.register(app)
serve.register(app)
doctor.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(catalog.app, name="catalog")
app.add_typer(policy.app, name="policy")
vet.register(app)
app.add_typer(audit.app, name="audit")
embed.register(app)
signing.register(app)
models.register(app)
app.add_typer(lineage.app, name="lineage")
app.add_typer(evals.app, name="eval")
usage.register(app)
drill.register(app)
withdraw.register(app)
app.add_typer(bundle.app, name="bundle")


def main() -> None:
    """Run the CLI; a BastionError becomes a one-line message, a hint and its exit status.

    Usage errors (unknown option, missing argument) are Click's, shown with exit status 2; with
    ``--json`` anywhere on the line they become one JSON document like every other error.
    """
    as_json = "--json" in sys.argv[1:]
    try:
        status = app(standalone_mode=False)
    except BastionError as exc:
        sys.exit(render_error(exc, as_json=as_json))
    except click.UsageError as exc:
        if not as_json:
            exc.show()
            sys.exit(exc.exit_code)
        error = UsageError(exc.format_message(), hint=_usage_hint(exc))
        sys.stdout.write(orjson.dumps({"error": error.to_json()}, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


def _usage_hint(exc: click.UsageError) -> str:
    ctx = exc.ctx
    return f"See '{ctx.command_path} --help'." if ctx is not None else "See 'bastion --help'."


if __name__ == "__main__":
    main()
