"""Every command is named in the README and every setting is in the example configuration."""

from __future__ import annotations

from pathlib import Path

import typer.main
from pydantic import BaseModel

from bastion.cli.main import app
from bastion.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        if subs:
            out.extend(f"{name} {sub}" for sub in subs)
        else:
            out.append(name)
    return out


def test_every_command_is_named_in_full_in_the_readme() -> None:
    # Spelled out as typed ("bastion keys revoke"), not a group and a word that happen to occur somewhere;
    # that the documented commands work is tests/test_readme.py's job (it runs every sh block).
    readme = ROOT.joinpath("README.md").read_text()
    missing = [command for command in commands() if f"bastion {command}" not in readme]
    assert not missing, f"commands not named in full in README.md: {missing}"


def test_every_setting_is_in_the_example_configuration() -> None:
    example = ROOT.joinpath("bastion.example.toml").read_text()
    missing = []
    for section, field in Settings.model_fields.items():
        if section in ("models", "source"):
            continue
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), section
        if f"[{section}]" not in example:
            missing.append(f"[{section}]")
        for key in model.model_fields:
            if f"{key} =" not in example and f"[{section}.{key}]" not in example:
                missing.append(f"{section}.{key}")
    from bastion.config import ModelSettings

    for key in ModelSettings.model_fields:
        if f"{key} =" not in example:
            missing.append(f"models.{key}")
    assert not missing, f"settings missing from bastion.example.toml: {missing}"
