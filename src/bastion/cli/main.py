"""Entry point: assembles the command groups and renders every BastionError the same way."""

from __future__ import annotations

import sys

import typer

from bastion.cli import (
    audit,
    bundle,
    catalog,
    dlp,
    doctor,
    drill,
    embed,
    evals,
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
from bastion.errors import BastionError

app = typer.Typer(
    name="bastion",
    help="Sovereign model gateway: know, decide, serve, prove and measure open-weight models offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


def main() -> None:
    """Run the CLI; a BastionError becomes a one-line message, a hint and its exit status.

    Usage errors (unknown option, missing argument) are Click's, shown with exit status 2.
    """
    try:
        app()
    except BastionError as exc:
        sys.exit(render_error(exc, as_json="--json" in sys.argv[1:]))


if __name__ == "__main__":
    main()
