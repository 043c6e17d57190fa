"""``bastion withdraw`` and ``bastion restore``: take a model, provider or country out of every route."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.audit import os_actor, record_admin, require_audit
from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.errors import UsageError
from bastion.signing import load_private_key
from bastion.withdrawal import Kind, WithdrawalStore

KeyOpt = Annotated[
    Path,
    typer.Option("--key", help="Organisation private key (PEM): withdrawals and restorations are signed."),
]


def register(app: typer.Typer) -> None:
    """Add ``withdraw`` and ``restore`` to ``app``."""

    @app.command("withdraw")
    def withdraw(
        key: KeyOpt = Path("org/signing-key.pem"),
        model: Annotated[str | None, typer.Option("--model", help="A served model (deployment).")] = None,
        provider: Annotated[str | None, typer.Option("--provider", help="Every deployment of it.")] = None,
        country: Annotated[str | None, typer.Option("--country", help="Every deployment in it.")] = None,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the record and log).")] = "",
        list_: Annotated[bool, typer.Option("--list", help="List withdrawals instead.")] = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Withdraw a model, provider or country from every route on every gateway, from the next request."""
        settings = load_settings(config)
        store = WithdrawalStore(settings.store.target())
        try:
            if list_:
                rows = store.list()

                def table() -> None:
                    t = Table("id", "kind", "target", "reason", "by", "at", "restored")
                    for w in rows:
                        restored = w.restored_at or ""
                        t.add_row(str(w.id), w.kind, w.target, w.reason, w.actor, w.created_at, restored)
                    out.print(t)

                emit([w.to_json() for w in rows], as_json, table)
                return
            named: tuple[tuple[Kind, str | None], ...] = (
                ("model", model),
                ("provider", provider),
                ("country", country),
            )
            targets = [(k, v) for k, v in named if v]
            if len(targets) != 1:
                raise UsageError("name exactly one of --model, --provider or --country")
            if not reason.strip():
                raise UsageError("a withdrawal needs a --reason", param="reason")
            if settings.audit.enabled:
                require_audit(settings.audit)
            kind, target = targets[0]
            done = store.withdraw(kind, target, reason, os_actor(), load_private_key(key))
        finally:
            store.close()
        record_admin(settings.audit, "withdraw", details=done.to_json())
        said = f"withdrawal {done.id}: {kind} {target!r} ({reason})"
        emit(done.to_json(), as_json, lambda: out.print(said))

    @app.command("restore")
    def restore(
        withdrawal_id: Annotated[int, typer.Argument(help="The id shown by 'bastion withdraw --list'.")],
        key: KeyOpt = Path("org/signing-key.pem"),
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Lift a withdrawal (signed and audited); routes use the target again from the next request."""
        settings = load_settings(config)
        if settings.audit.enabled:
            require_audit(settings.audit)
        store = WithdrawalStore(settings.store.target())
        try:
            done = store.restore(withdrawal_id, os_actor(), load_private_key(key))
        finally:
            store.close()
        record_admin(settings.audit, "restore", details=done.to_json())
        said = f"withdrawal {done.id} lifted ({done.kind} {done.target!r})"
        emit(done.to_json(), as_json, lambda: out.print(said))
