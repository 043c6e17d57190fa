"""Forward-only schema migrations, one definition for SQLite and PostgreSQL.

Each component (keys, registry, audit ...) owns a :class:`Migrations` list: small functions taking a
:class:`~bastion.store.connection.Connection`, applied in order, each in its own transaction, recorded
in ``_migrations``. Opening a store applies what is missing, so a database made by an older Bastion is
upgraded in place; ``bastion db status`` reads the same table without applying anything.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bastion.store.connection import Connection

Migration = Callable[[Connection], None]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS _migrations ("
    " component TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,"
    " PRIMARY KEY (component, name))"
)


@dataclass(frozen=True)
class ComponentStatus:
    """What of one component's schema is applied and what is pending, in one database."""

    component: str
    location: str
    applied: tuple[str, ...]
    pending: tuple[str, ...]
    #: names recorded in the database that this Bastion does not know (a newer version wrote them)
    unknown: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "location": self.location,
            "applied": list(self.applied),
            "pending": list(self.pending),
            "unknown": list(self.unknown),
        }


class Migrations:
    """An ordered, append-only list of schema migrations for one component."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.steps: list[tuple[str, Migration]] = []

    def __call__(self, fn: Migration) -> Migration:
        """Register ``fn`` as the next migration (use as a decorator)."""
        self.steps.append((fn.__name__, fn))
        return fn

    def _done(self, conn: Connection) -> list[str]:
        rows = conn.execute("SELECT name FROM _migrations WHERE component = ?", (self.component,))
        return [str(r[0]) for r in rows]

    def apply(self, conn: Connection) -> list[str]:
        """Apply every migration not yet recorded; returns the names applied."""
        with conn.transaction():
            _serialise(conn)  # PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin
            conn.execute(_TABLE)
        applied = []
        for name, fn in self.steps:
            if name in self._done(conn):
                continue
            # One transaction per migration (DDL included: PostgreSQL's DDL is transactional too): all
            # of it or none of it. The check is repeated under the write lock so two processes opening
            # the same new database apply each step once.
            with conn.transaction():
                _serialise(conn)
                if name in self._done(conn):
                    continue
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (component, name, applied_at) VALUES (?, ?, ?)",
                    (self.component, name, datetime.now(UTC).isoformat(timespec="milliseconds")),
                )
            applied.append(name)
        return applied

    def status(self, conn: Connection) -> ComponentStatus:
        """Applied and pending migrations of this component, read without changing anything."""
        known = [name for name, _ in self.steps]
        done = set(self._done(conn)) if _has_table(conn) else set()
        return ComponentStatus(
            self.component,
            conn.location,
            tuple(n for n in known if n in done),
            tuple(n for n in known if n not in done),
            tuple(sorted(done - set(known))),
        )


#: the advisory lock every migration transaction takes on PostgreSQL (a stable number for "migrations")
MIGRATION_LOCK = zlib.crc32(b"bastion-migrations")


def _serialise(conn: Connection) -> None:
    """Hold the migration lock until this transaction ends (SQLite's BEGIN IMMEDIATE already does).

    One lock for every component, not one each: components share objects (the ``_changes`` table and
    its trigger function), and concurrent DDL on one object fails on PostgreSQL instead of waiting.
    """
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))


def _has_table(conn: Connection) -> bool:
    if conn.dialect == "postgresql":
        row = conn.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()
    else:
        row = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = '_migrations'").fetchone()
    return bool(row[0])
