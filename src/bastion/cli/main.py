"""Entry point: assembles the command groups and renders every BastionError the same way."""

from __future__ import annotations

import sys

import click
import typer

from bastion.cli import evals, keys
from bastion.cli.render import render_error
from bastion.errors import BastionError, UsageError

app = typer.Typer(
    name="bastion",
    help="Sovereign model gateway: know, decide, serve, prove and measure open-weight models offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(evals.app, name="eval")


def main() -> None:
    """Run the CLI; a BastionError becomes a one-line message, a hint and its exit status."""
    try:
        rc = app(standalone_mode=False)
    except BastionError as exc:
        sys.exit(render_error(exc, as_json="--json" in sys.argv[1:]))
    except click.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        sys.exit(UsageError.exit_code)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
