"""Storage shared by the capabilities: SQLite (embedded default) or PostgreSQL, one schema definition.

A store opens its database with :func:`open_database` and a :class:`Migrations` list, and talks to it
through a :class:`Connection` that hides the few differences between the two (see
:mod:`bastion.store.connection`). ``[store] url = "postgresql://…"`` selects PostgreSQL.
"""

from __future__ import annotations

from bastion.errors import ConfigError
from bastion.store.changes import ChangeWatch, count_changes, notify_changes
from bastion.store.connection import Connection, ConstraintViolation, Cursor, SessionLock, SqliteConnection
from bastion.store.migrations import ComponentStatus, Migrations
from bastion.store.notify import Listener, listen, listener_for
from bastion.store.sqlite import open_sqlite_store
from bastion.store.target import PostgresTarget, Target, redact


def open_database(target: Target, *migrations: Migrations) -> Connection:
    """Open the database at ``target`` (a SQLite file or a PostgreSQL target) and apply ``migrations``."""
    if isinstance(target, PostgresTarget):
        from bastion.store.postgres import PgConnection  # psycopg loads only for PostgreSQL users

        conn = PgConnection(target)
        try:
            for m in migrations:
                m.apply(conn)
        except BaseException as exc:
            conn.close()
            if type(exc).__module__.startswith("psycopg"):  # SQL the server refused: not a traceback
                raise ConfigError(
                    f"{conn.location} is not a usable Bastion database: {exc}",
                    hint="Check with 'bastion db status'; point store.url at a new database, or restore one.",
                ) from exc
            raise
        return conn
    return open_sqlite_store(target, *migrations)


def close_pools(url: str | None = None) -> None:
    """Close this process's PostgreSQL pools (every one, or the one for ``url``), at exit or in tests."""
    import sys

    if "bastion.store.postgres" in sys.modules:
        from bastion.store.postgres import POOLS

        POOLS.close_all(url)


__all__ = [
    "ChangeWatch",
    "ComponentStatus",
    "Connection",
    "ConstraintViolation",
    "Cursor",
    "Listener",
    "Migrations",
    "PostgresTarget",
    "SessionLock",
    "SqliteConnection",
    "Target",
    "close_pools",
    "count_changes",
    "listen",
    "listener_for",
    "notify_changes",
    "open_database",
    "redact",
]
