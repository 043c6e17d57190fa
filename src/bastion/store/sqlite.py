"""Open a SQLite database and bring a component's schema up to date.

Each component (keys, registry, evals ...) owns a :class:`Migrations` list: small functions applied in
order, forward only, each in its own transaction, recorded in ``_migrations``. Opening a database
applies what is missing, so a database made by an older Bastion is upgraded in place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from bastion.errors import ConfigError

Migration = Callable[[sqlite3.Connection], None]


class Migrations:
    """An ordered, append-only list of schema migrations for one component."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.steps: list[tuple[str, Migration]] = []

    def __call__(self, fn: Migration) -> Migration:
        """Register ``fn`` as the next migration (use as a decorator)."""
        self.steps.append((fn.__name__, fn))
        return fn

    def apply(self, conn: sqlite3.Connection) -> list[str]:
        """Apply every migration not yet recorded; returns the names applied."""
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations ("
            " component TEXT NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL"
            " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), PRIMARY KEY (component, name))"
        )
        done = {
            row[0]
            for row in conn.execute("SELECT name FROM _migrations WHERE component = ?", (self.component,))
        }
        applied = []
        for name, fn in self.steps:
            if name in done:
                continue
            # One explicit transaction per migration (DDL included): all of it or none of it.
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Asked again under the write lock: another process opening the same database (replicas,
                # `serve --workers`) may have applied it since the read above.
                if conn.execute(
                    "SELECT 1 FROM _migrations WHERE component = ? AND name = ?", (self.component, name)
                ).fetchone():
                    conn.rollback()
                    continue
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (component, name) VALUES (?, ?)", (self.component, name)
                )
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            applied.append(name)
        return applied


def open_database(path: Path, *migrations: Migrations) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` in WAL mode and apply ``migrations``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the database {path}: {exc}",
            hint="Check that the directory exists and is writable, or set store.path in the configuration.",
        ) from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        for m in migrations:
            m.apply(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(
            f"{path} is not a usable Bastion database: {exc}",
            hint="Point store.path at a new file, or restore the database from a backup.",
        ) from exc
    return conn
