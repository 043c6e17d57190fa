"""Every component's schema in one place, for ``bastion db migrate`` and ``bastion db status``.

Where each component lives: with ``store.url`` every one is in that PostgreSQL database; otherwise keys,
registry, usage and withdrawals share ``store.path``, the audit log has ``audit.path`` and eval results
``$BASTION_HOME/evals.db``. The digest cache and lineage references are local caches and stay SQLite on
every deployment: each host hashes its own files, and references are read-only data shipped with
Bastion or imported per host, so neither is shared state a replica must agree on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.audit.db_store import MIGRATIONS as AUDIT
from bastion.config import Settings
from bastion.evals.store import default_db
from bastion.evals.store import migrations as EVALS
from bastion.keys.store import migrations as KEYS
from bastion.quota.store import migrations as QUOTA
from bastion.registry.store import migrations as REGISTRY
from bastion.serve.files import MIGRATIONS as FILES
from bastion.store import ComponentStatus, Migrations, PostgresTarget, Target, open_database
from bastion.withdrawal.store import migrations as WITHDRAWAL


@dataclass(frozen=True)
class Component:
    """One component's migrations and the database that holds its tables."""

    migrations: Migrations
    target: Target


def components(settings: Settings) -> list[Component]:
    """Every component with a schema, and where it lives under ``settings``."""
    store = settings.store.target()
    evals: Target = store if isinstance(store, PostgresTarget) else default_db()
    return [
        Component(KEYS, store),
        Component(REGISTRY, store),
        Component(QUOTA, store),
        Component(WITHDRAWAL, store),
        Component(FILES, store),  # uploads and vector stores of the OpenAI retrieval API
        Component(AUDIT, settings.audit.target()),
        Component(EVALS, evals),
    ]


def status(settings: Settings) -> list[ComponentStatus]:
    """Applied and pending migrations of every component; creates and changes nothing."""
    out = []
    for c in components(settings):
        if isinstance(c.target, Path) and not c.target.exists():
            names = tuple(name for name, _ in c.migrations.steps)
            out.append(ComponentStatus(c.migrations.component, str(c.target), (), names))
            continue
        conn = open_database(c.target)
        try:
            out.append(c.migrations.status(conn))
        finally:
            conn.close()
    return out


@dataclass(frozen=True)
class Migrated:
    """What ``migrate`` applied to one component."""

    component: str
    location: str
    applied: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "location": self.location, "applied": list(self.applied)}


def migrate(settings: Settings) -> list[Migrated]:
    """Bring every component's schema up to date (creating databases as needed); safe to run twice and
    from several processes at once."""
    out = []
    for c in components(settings):
        conn = open_database(c.target)
        try:
            applied = c.migrations.apply(conn)
            out.append(Migrated(c.migrations.component, conn.location, tuple(applied)))
        finally:
            conn.close()
    return out
