"""Change counters: tell an in-memory cache that *its* table changed, not merely that the file did.

``PRAGMA data_version`` changes whenever another connection commits anything to the database file.
Keys, withdrawals and quota usage share one file, so with quotas on every settled request (a usage row)
made the key cache and the withdrawal cache reload on the next request: every key row re-parsed and
every withdrawal signature re-verified, per request (bench/README.md, "Gateway overhead"). A counter per
watched table, bumped by triggers inside the database (so every writer bumps it: the CLI, another
gateway, a hand-written UPDATE), says whether a reload is really needed. ``data_version`` stays the
first, cheapest check on SQLite. On PostgreSQL the same triggers, written as a trigger function, bump
the same table and also NOTIFY (:func:`notify_changes`); a gateway's listener
(:mod:`bastion.store.notify`) turns the notifications into "read the counters now", so a check costs no
query while nothing changes. Without a listener (the CLI, or its connection lost), every check reads the
counters (one query).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from bastion.store.connection import Connection, SqliteConnection
from bastion.store.notify import CHANNEL, Mark, listener_for

_EVENTS = ("insert", "delete", "update")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _identifiers(*names: str) -> None:
    for name in names:  # identifiers from our own migrations, never from input; checked anyway
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")


def _bump(table: str) -> str:
    return f"UPDATE change_counters SET generation = generation + 1 WHERE name = '{table}';"  # noqa: S608


def count_changes(conn: Connection, table: str, columns: Sequence[str] = ()) -> None:
    """Migration step: a counter for ``table`` bumped on every insert, delete and update.

    ``columns``: count only updates of these (the ones a cache reads), so that e.g. a key's last-used
    time, written every 30 s, does not make every gateway reload every key.
    """
    _identifiers(table, *columns)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS change_counters (name TEXT PRIMARY KEY, generation INTEGER NOT NULL)"
    )
    conn.execute("INSERT INTO change_counters VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (table,))
    update = _bump(table)
    of = f" OF {', '.join(columns)}" if columns else ""
    if conn.dialect == "postgresql":
        conn.execute(
            f"CREATE FUNCTION {table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN {update} RETURN NULL; END $$"
        )
        for event in _EVENTS:  # per statement: one bump per write, however many rows it touched
            what = f"UPDATE{of}" if event == "update" else event.upper()
            conn.execute(
                f"CREATE TRIGGER {table}_changed_on_{event} AFTER {what} ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {table}_changed()"
            )
        return
    bump = f"BEGIN {update} END"
    for event in _EVENTS:
        what = f"UPDATE{of}" if event == "update" else event.upper()
        conn.execute(f"CREATE TRIGGER {table}_changed_on_{event} AFTER {what} ON {table} {bump}")


def notify_changes(conn: Connection, table: str) -> None:
    """Migration step after :func:`count_changes`: on PostgreSQL, the counter's trigger function also
    notifies :data:`~bastion.store.notify.CHANNEL` (payload ``schema.table``; sent at commit, once per
    transaction). Nothing on SQLite, which has no NOTIFY (``data_version`` is its cheap check).

    Not when the server's notification queue is more than half full: a full queue makes every
    notifying COMMIT fail, and a session that LISTENs and never reads (any role that can connect) can
    fill it. Then a revocation must still commit; gateways see it at their next periodic counter read
    (``RECHECK_S``), not at once.
    """
    _identifiers(table)
    if conn.dialect != "postgresql":
        return
    conn.execute(
        f"CREATE OR REPLACE FUNCTION {table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN {_bump(table)} IF pg_notification_queue_usage() < 0.5 THEN"
        f" PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME); END IF;"
        " RETURN NULL; END $$"
    )


class ChangeWatch:
    """Whether any of ``tables`` changed since the last :meth:`changed` that said so (the first call
    says so).

    The caller holds whatever lock guards ``conn`` and reads the tables right after a True, so the rows
    it reads are at least as new as the counters it saw (a change in between is seen on the next call).
    On PostgreSQL with this process's listener connected, the counters are read only when a
    notification may concern ``tables``, after a reconnection, and at least every ``recheck_s``.
    """

    def __init__(self, conn: Connection, *tables: str) -> None:
        self._conn = conn
        self._tables = tables
        self._version: int | None = None
        self._generations: tuple[int, ...] | None = None
        triggers = [f"{t}_changed_on_{e}" for t in tables for e in _EVENTS]
        marks = ", ".join("?" * len(tables))
        catalog = (
            "SELECT count(DISTINCT tgname) FROM pg_trigger WHERE tgrelid IN (SELECT to_regclass(n)"  # noqa: S608
            f" FROM unnest(ARRAY[{marks}]) AS n) AND tgname IN"
            if conn.dialect == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN"
        )
        self._query = (
            f"SELECT ({catalog}"  # noqa: S608 - placeholders only: names are bound parameters
            f" ({', '.join('?' * len(triggers))})), generation FROM change_counters WHERE name IN ({marks})"
            " ORDER BY name"
        )
        self._triggers = len(triggers)
        on = tables if conn.dialect == "postgresql" else ()  # the tables the trigger names belong to
        self._args = (*on, *triggers, *tables)
        self._url: str | None = None
        if conn.dialect == "postgresql":
            from bastion.store.postgres import PgConnection  # loaded already: conn is one

            assert isinstance(conn, PgConnection)
            self._url = conn.target.url
        #: the listener's mark when the counters were last read, and when (monotonic)
        self._mark: Mark | None = None
        self._read_at = 0.0

    def reset(self) -> None:
        """Forget what was seen: the next call says changed (after a write on this very connection,
        which changes neither ``data_version`` for it nor anything the caller's cache holds)."""
        self._version = None
        self._generations = None
        self._mark = None

    def changed(self) -> bool:
        """True when a table may have changed since the last True."""
        if isinstance(self._conn, SqliteConnection):
            version = self._conn.data_version()
            if version == self._version:
                return False
            self._version = version
        listener = listener_for(self._url) if self._url is not None else None
        mark, now = (listener.mark(self._tables), time.monotonic()) if listener is not None else (None, 0.0)
        if listener is not None and mark is not None and mark == self._mark:
            if now - self._read_at < listener.recheck_s:
                return False  # listening, and no notification for our tables since the last read
        # The mark is taken before the read: a change committed after the read started is notified
        # after this point, so it moves the mark and the next call reads again. It is kept only once
        # the read succeeded (a failed read must not count as one).
        rows = self._conn.execute(self._query, self._args).fetchall()
        self._mark, self._read_at = mark, now
        if len(rows) != len(self._tables) or any(r[0] != self._triggers for r in rows):
            # A trigger dropped or a counter missing: the counters prove nothing, so every change counts
            # (and every call reads again: a notification from a dropped trigger would never come).
            self._generations = None
            self._mark = None
            return True
        generations = tuple(r[1] for r in rows)
        if generations == self._generations:
            return False
        self._generations = generations
        return True
