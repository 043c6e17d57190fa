"""Open a SQLite database and bring components' schemas up to date.

Two callers: the stores behind :func:`bastion.store.open_database` (they get the portable
:class:`~bastion.store.connection.SqliteConnection`) and the local caches (digest cache, lineage
references), which stay SQLite on every deployment and get the ``sqlite3`` connection itself.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bastion.errors import ConfigError
from bastion.store.connection import SqliteConnection
from bastion.store.migrations import Migrations


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, check_same_thread=False, timeout=10.0)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the database {path}: {exc}",
            hint="Check that the directory exists and is writable, or set store.path in the configuration.",
        ) from exc


def _wal(raw: sqlite3.Connection, tries: int = 100) -> None:
    """Switch to WAL. On a brand-new file opened by several processes at once the switch can fail with
    "database is locked" without SQLite's busy handler waiting (seen in CI): wait and try again."""
    for attempt in range(tries):
        try:
            raw.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def open_sqlite_store(path: Path, *migrations: Migrations) -> SqliteConnection:
    """Open (creating if needed) the database at ``path`` in WAL mode and apply ``migrations``."""
    raw = _connect(path)
    # Autocommit outside Connection.transaction(): a statement never leaves a transaction open.
    raw.isolation_level = None
    conn = SqliteConnection(raw, str(path))
    try:
        _wal(raw)
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA foreign_keys=ON")
        for m in migrations:
            m.apply(conn)
    except sqlite3.DatabaseError as exc:
        raw.close()
        raise ConfigError(
            f"{path} is not a usable Bastion database: {exc}",
            hint="Point store.path at a new file, or restore the database from a backup.",
        ) from exc
    return conn


def open_sqlite(path: Path, *migrations: Migrations) -> sqlite3.Connection:
    """Like :func:`open_sqlite_store`, handing back the ``sqlite3`` connection (for local caches)."""
    raw = open_sqlite_store(path, *migrations).raw
    raw.isolation_level = "DEFERRED"  # the caches use sqlite3's own implicit transactions (``with conn:``)
    return raw
