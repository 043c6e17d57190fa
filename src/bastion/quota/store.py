"""Durable usage: tokens and requests per scope and budget period, and per key and model per day.

It lives in the gateway's database (``store.path``) beside the keys. Budget counters are added to when a
request settles, so a restarted gateway starts from what was already spent this period.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from typing import Any

from bastion.store import Connection, Migrations, Target, open_database

migrations = Migrations("quota")


@migrations
def m001_usage(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE budget_usage (
             scope TEXT NOT NULL,          -- key:ID, group:NAME or org
             period TEXT NOT NULL,         -- first day of the budget period (UTC, ISO date)
             tokens INTEGER NOT NULL,
             PRIMARY KEY (scope, period)
           )"""
    )
    conn.execute(
        """CREATE TABLE daily_usage (
             day TEXT NOT NULL,            -- UTC date
             key_id TEXT NOT NULL,
             model TEXT NOT NULL,          -- the model that answered
             requests INTEGER NOT NULL,
             tokens_in INTEGER NOT NULL,
             tokens_out INTEGER NOT NULL,
             PRIMARY KEY (day, key_id, model)
           )"""
    )


@migrations
def m002_seconds(conn: Connection) -> None:
    # How long the requests took, gateway-side: measured throughput (tokens/s) and local cost come from it.
    conn.execute("ALTER TABLE daily_usage ADD COLUMN seconds REAL NOT NULL DEFAULT 0")


@dataclass(frozen=True)
class UsageRow:
    """Requests and tokens of one key on one model on one day."""

    day: str
    key_id: str
    model: str
    requests: int
    tokens_in: int
    tokens_out: int
    #: seconds the gateway spent on these requests, from received to answered (0 before it was recorded)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class UsageStore:
    """Budget counters and daily usage in the database at ``path`` (a file or PostgreSQL)."""

    def __init__(self, path: Target) -> None:
        self._conn = open_database(path, migrations)
        # A second connection that never waits for SQLite's write lock, for :meth:`try_record` on the
        # event loop: a write there must not stall every request while another process holds the lock.
        # PostgreSQL has none: a write is a round trip to a server, never done on the event loop.
        self._nowait: Connection | None = None
        if self._conn.dialect == "sqlite":
            self._nowait = open_database(path, migrations)
            self._nowait.execute("PRAGMA busy_timeout = 0")
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._nowait is not None:
            self._nowait.close()
        self._conn.close()

    def budget_used(self, scope: str, period: str) -> int:
        """Tokens spent by ``scope`` in the budget period starting ``period``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT tokens FROM budget_usage WHERE scope = ? AND period = ?", (scope, period)
            ).fetchone()
        return int(row[0]) if row else 0

    def record(
        self, scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str, tokens_in: int,
        tokens_out: int, charged: int | None = None, seconds: float = 0.0,
    ) -> None:
        """Add one settled request to its scopes' budgets and to the key's daily usage, in one transaction.

        ``charged``: what the budgets are charged, when not ``tokens_in + tokens_out`` (unknown usage).
        """
        with self._lock:
            _write(self._conn, scopes, period, day, key_id, model, tokens_in, tokens_out, charged, seconds)

    def try_record(
        self, scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str, tokens_in: int,
        tokens_out: int, charged: int | None = None, seconds: float = 0.0,
    ) -> bool:
        """:meth:`record` without waiting: False (nothing written) when the store or the database is busy.

        The gateway settles on its event loop with this (one short transaction, no fsync in WAL mode
        with ``synchronous=NORMAL``), and only when it returns False hands :meth:`record` to a thread:
        the thread hop cost more than the write itself (bench/README.md, "Gateway overhead").
        """
        if self._nowait is None or not self._lock.acquire(blocking=False):
            return False
        try:
            _write(self._nowait, scopes, period, day, key_id, model, tokens_in, tokens_out, charged,
                   seconds)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False  # rolled back by the connection's context manager: nothing was written
            raise
        finally:
            self._lock.release()
        return True

    def daily(self, since: str | None = None) -> list[UsageRow]:
        """Daily usage rows from ``since`` (an ISO date) on, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT day, key_id, model, requests, tokens_in, tokens_out, seconds FROM daily_usage"
                " WHERE day >= ? ORDER BY day, key_id, model",
                (since or "",),
            ).fetchall()
        return [UsageRow(*r) for r in rows]


def _write(
    conn: Connection, scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str,
    tokens_in: int, tokens_out: int, charged: int | None, seconds: float = 0.0,
) -> None:
    """One settled request: its scopes' budget counters and the key's daily usage, in one transaction."""
    tokens = tokens_in + tokens_out if charged is None else charged
    with conn.transaction():
        conn.executemany(
            "INSERT INTO budget_usage (scope, period, tokens) VALUES (?, ?, ?)"
            " ON CONFLICT (scope, period) DO UPDATE SET tokens = budget_usage.tokens + excluded.tokens",
            [(scope, period, tokens) for scope in scopes],
        )
        conn.execute(
            "INSERT INTO daily_usage (day, key_id, model, requests, tokens_in, tokens_out, seconds)"
            " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (day, key_id, model) DO UPDATE"
            " SET requests = daily_usage.requests + 1,"
            " tokens_in = daily_usage.tokens_in + excluded.tokens_in,"
            " tokens_out = daily_usage.tokens_out + excluded.tokens_out,"
            " seconds = daily_usage.seconds + excluded.seconds",
            (day, key_id, model, tokens_in, tokens_out, seconds),
        )
