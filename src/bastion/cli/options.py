"""Options shared by every command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration TOML (default: $BASTION_CONFIG, else built-in defaults).",
        envvar="BASTION_CONFIG",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document instead of text.")]
