"""Entry point: assembles the command groups and renders every BastionError the same way."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from bastion import __version__
from bastion.cli import (
    audit,
    bundle,
    catalog,
    db,
    dlp,
    doctor,
    drill,
    embed,
    evals,
    init,
    keys,
    lineage,
    models,
    policy,
    rag,
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
app.add_typer(dlp.app, name="dlp")
app.add_typer(rag.app, name="rag")
app.add_typer(db.app, name="db")


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
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(1)
    except typer.TyperException as exc:  # Click's own errors (typer vendors Click): usage is exit 2
        sys.exit(_click_error(exc, as_json))
    sys.exit(status if isinstance(status, int) else 0)


def _click_error(exc: typer.TyperException, as_json: bool) -> int:
    """Show a Click error (one JSON document for a usage error with --json); return its exit status."""
    code = int(getattr(exc, "exit_code", 1))
    if as_json and code == UsageError.exit_code:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        error = UsageError(message, hint=_usage_hint(exc))
        sys.stdout.write(orjson.dumps({"error": error.to_json()}, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif hasattr(exc, "show"):
        exc.show()
    else:
        sys.stderr.write(f"error: {exc}\n")
    return code


def _usage_hint(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "bastion"
    return f"See '{path} --help'."


if __name__ == "__main__":
    main()
