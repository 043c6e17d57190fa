"""``bastion keys``: create, list and revoke gateway API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from bastion.audit import record_admin, require_audit
from bastion.cli.options import ConfigOpt, JsonOpt, duration
from bastion.cli.render import emit, out
from bastion.config import Settings, load_settings
from bastion.errors import NotFound, did_you_mean
from bastion.keys import KeyStore
from bastion.registry import Registry

app = typer.Typer(help="Gateway API keys: shown once, stored only as hashes.", no_args_is_help=True)


def _open(config: ConfigOpt) -> tuple[Settings, KeyStore]:
    settings = load_settings(config)
    return settings, KeyStore(settings.store.target())


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who the key is for (a person, team or service).")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model the key may call; repeat, or '*' for all.")
    ],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Group of the principal.")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h (default: never expires).")
    ] = None,
    allow_unknown: Annotated[
        bool, typer.Option("--allow-unknown", help="Accept --model names neither configured nor admitted.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. The key is printed once and never stored."""
    expires_at = datetime.now(UTC) + duration(expires) if expires else None
    settings, store = _open(config)
    if settings.audit.enabled:
        require_audit(settings.audit)  # refuse before creating a key that could not be recorded
    if not allow_unknown:
        _check_models(settings, model)
    new = store.create(name, model, group or [], expires_at)
    record_admin(settings.audit, "key.create", details=new.record.to_json())

    def human() -> None:
        out.print(f"[bold]{new.key}[/]")
        out.print(f"key id {new.record.id} for {new.record.name!r}, models: {', '.join(new.record.models)}")
        if new.record.expires_at:
            out.print(f"expires at {new.record.expires_at}")
        out.print("[yellow]Store it now: Bastion keeps only its hash and cannot show it again.[/]")

    emit(new.to_json(), as_json, human)


def _check_models(settings: Settings, models: list[str]) -> None:
    """Refuse a model name no gateway could serve: a typo would make a key that never works."""
    registry = Registry(settings.store.target())
    try:
        known = {m.name for m in settings.models} | {a.name for a in registry.list()}
    finally:
        registry.close()
    for name in models:
        if name != "*" and name not in known:
            raise NotFound(
                f"model {name!r} is neither configured nor admitted",
                hint=did_you_mean(
                    name,
                    sorted(known),
                    "See 'bastion models list' and the [[models]] of the configuration; "
                    "--allow-unknown creates the key anyway.",
                ),
            )


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (ids and names, never the keys)."""
    keys = _open(config)[1].list(include_revoked=all_)

    def human() -> None:
        table = Table("id", "name", "models", "groups", "created", "expires", "last used", "revoked")
        for k in keys:
            table.add_row(
                k.id,
                k.name,
                ", ".join(k.models),
                ", ".join(k.groups),
                k.created_at,
                k.expires_at or "never",
                k.last_used_at or "",
                k.revoked_at or "",
            )
        out.print(table)

    emit([k.to_json() for k in keys], as_json, human)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by 'bastion keys list'.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key; a running gateway refuses it from the next request on."""
    settings, store = _open(config)
    if settings.audit.enabled:
        require_audit(settings.audit)
    rec = store.revoke(key_id)
    record_admin(settings.audit, "key.revoke", details=rec.to_json())
    emit(rec.to_json(), as_json, lambda: out.print(f"revoked key {rec.id} ({rec.name}) at {rec.revoked_at}"))


@app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key id shown by 'bastion keys list'.")],
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old key keeps working, e.g. 24h, 7d.")
    ] = "24h",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime of the new key (default: never expires).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a key: a new key with the same name, models and groups; the old one expires after --overlap."""
    window = duration(overlap)
    expires_at = datetime.now(UTC) + duration(expires) if expires else None
    settings, store = _open(config)
    if settings.audit.enabled:
        require_audit(settings.audit)
    new, old = store.rotate(key_id, window, expires_at)
    record_admin(settings.audit, "key.rotate", details={"new": new.record.to_json(), "old": old.to_json()})

    def human() -> None:
        out.print(f"[bold]{new.key}[/]")
        out.print(f"key id {new.record.id} replaces {old.id} ({old.name}), which stops at {old.expires_at}")
        out.print("[yellow]Store it now: Bastion keeps only its hash and cannot show it again.[/]")

    emit({"new": new.to_json(), "old": old.to_json()}, as_json, human)
