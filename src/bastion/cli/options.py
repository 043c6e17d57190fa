"""Options shared by every command group."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from bastion import bundled
from bastion.config import load_settings
from bastion.errors import UsageError
from bastion.policy import Organisation

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration TOML (default: $BASTION_CONFIG, else $BASTION_HOME/bastion.toml, "
        "else built-in defaults).",
        envvar="BASTION_CONFIG",
        show_envvar=True,
    ),
]
ModelPathArg = Annotated[
    Path,
    typer.Argument(
        help="A model file or folder (every file in it is covered), or bundled:smollm2|gemma3|minilm.",
        parser=lambda s: bundled.resolve(s),
        metavar="PATH",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document instead of text.")]


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``45s`` as a timedelta (a usage error otherwise)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise typer.BadParameter(f"{text!r} is not a duration; write e.g. 30d, 12h, 90m or 45s")
    return timedelta(**{units[unit]: int(number)})


def load_organisation(org: Path | None, config: Path | None = None) -> Organisation:
    """``--org`` if given, else the configured/home organisation.toml, else the bundled example."""
    return Organisation.load(org if org is not None else load_settings(config).organisation_file())


PasswordEnvOpt = Annotated[
    str | None,
    typer.Option("--password-env", help="Name of an environment variable holding the key's passphrase."),
]


def password_from_env(name: str | None) -> bytes | None:
    """The passphrase held in the environment variable ``name`` (None when no variable is named)."""
    if name is None:
        return None
    if name not in os.environ:
        raise UsageError(f"${name} is not set", hint="Export the passphrase in that variable.")
    return os.environ[name].encode()
