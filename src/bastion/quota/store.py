"""Durable usage and shared reservations: per scope and budget period, per key and model per day.

It lives in the gateway's database (``store.path`` or ``store.url``) beside the keys, shared by every
worker and replica. A reservation is taken and settled here in one transaction each
(:mod:`bastion.quota.ledger`), so N processes together never exceed a limit; budget counters are
added to when a request settles, so a restarted gateway starts from what was already spent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bastion.quota import ledger
from bastion.quota.limiter import Limiter, Limits, Reservation
from bastion.store import Connection, Migrations, Target, open_database

T = TypeVar("T")

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


@migrations
def m003_shared_reservations(conn: Connection) -> None:
    # Reservations and per-minute windows in the database instead of each process's memory, so that
    # workers and replicas share every limit (see ledger.py for how they are locked and expire).
    conn.execute(
        """CREATE TABLE quota_window (
             scope TEXT NOT NULL,
             second INTEGER NOT NULL,      -- Unix time, whole seconds: one bucket of the sliding minute
             requests INTEGER NOT NULL,
             tokens INTEGER NOT NULL,      -- reserved upper bounds, replaced by what was used on settle
             PRIMARY KEY (scope, second)
           )"""
    )
    conn.execute(
        """CREATE TABLE quota_owner (
             owner TEXT PRIMARY KEY,       -- one gateway process (a random id per start)
             expires REAL NOT NULL         -- Unix time its lease ends unless renewed
           )"""
    )
    conn.execute(
        """CREATE TABLE quota_hold (
             id TEXT NOT NULL,             -- the reservation
             scope TEXT NOT NULL,
             owner TEXT NOT NULL,
             period TEXT NOT NULL,
             tokens INTEGER NOT NULL,      -- the request's upper bound, until it settles
             PRIMARY KEY (id, scope)
           )"""
    )
    conn.execute("CREATE INDEX quota_hold_scope ON quota_hold (scope, period)")


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


@dataclass(frozen=True)
class Settlement:
    """One settled request: what its reservation becomes in the budgets and the key's daily usage."""

    reservation: Reservation
    day: str
    key_id: str
    model: str
    tokens_in: int
    tokens_out: int
    #: what the budgets are charged (``tokens_in + tokens_out``, or the reservation when usage is unknown)
    charged: int
    seconds: float = 0.0


class UsageStore:
    """Budget counters, shared reservations and daily usage in the database at ``path`` (a file or
    PostgreSQL)."""

    def __init__(self, path: Target) -> None:
        self._conn = open_database(path, migrations)
        self.dialect = self._conn.dialect
        # A second connection that never waits for SQLite's write lock, for the ``try_*`` methods on the
        # event loop: a write there must not stall every request while another process holds the lock.
        # PostgreSQL has none: a write is a round trip to a server, never done on the event loop.
        self._nowait: Connection | None = None
        if self._conn.dialect == "sqlite":
            self._nowait = open_database(path, migrations)
            self._nowait.execute("PRAGMA busy_timeout = 0")
        # SQLite: one writer per process at a time (the file allows one anyway). PostgreSQL: none; the
        # pool gives each thread its own connection and the rows serialise what must be serialised.
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._nowait is not None:
            self._nowait.close()
        self._conn.close()

    @contextmanager
    def _serial(self) -> Iterator[None]:
        if self._nowait is None:
            yield
            return
        with self._lock:
            yield

    def _try(self, fn: Callable[[Connection], T]) -> T | None:
        """``fn`` on the SQLite connection that never waits: None when anything is busy (nothing written)."""
        conn = self._nowait
        if conn is None or not self._lock.acquire(blocking=False):
            return None
        try:
            return ledger.nowait(lambda: fn(conn))
        finally:
            self._lock.release()

    def budget_used(self, scope: str, period: str) -> int:
        """Tokens spent (settled) by ``scope`` in the budget period starting ``period``."""
        with self._serial():
            row = self._conn.execute(
                "SELECT tokens FROM budget_usage WHERE scope = ? AND period = ?", (scope, period)
            ).fetchone()
        return int(row[0]) if row else 0

    def held(self, scope: str, period: str, now: float) -> int:
        """Tokens held by live, unsettled reservations of ``scope`` in the period (every replica)."""
        with self._serial():
            row = self._conn.execute(
                "SELECT SUM(h.tokens) FROM quota_hold h JOIN quota_owner o ON o.owner = h.owner"
                " WHERE h.scope = ? AND h.period = ? AND o.expires > ?", (scope, period, now)).fetchone()
        return int(row[0] or 0)

    # -- reservations ------------------------------------------------------------------------------

    def reserve(self, limiter: Limiter, limits: dict[str, Limits], tokens: int, period: str, owner: str,
                now: float, hold_id: str) -> Reservation:
        """Reserve in one transaction, waiting for the database if needed (see :func:`ledger.reserve`)."""
        with self._serial():
            return ledger.reserve(self._conn, limiter, limits, tokens, period, owner, now, hold_id)

    def try_reserve(self, limiter: Limiter, limits: dict[str, Limits], tokens: int, period: str,
                    owner: str, now: float, hold_id: str) -> Reservation | None:
        """:meth:`reserve` without waiting: None (nothing held) when the store or the database is busy."""
        return self._try(lambda c: ledger.reserve(c, limiter, limits, tokens, period, owner, now, hold_id))

    def renew(self, owner: str, expires: float, now: float) -> int:
        """Extend ``owner``'s lease and sweep what expired (holds of dead owners, old buckets)."""
        with self._serial():
            ledger.renew(self._conn, owner, expires)
            return ledger.sweep(self._conn, now)

    def database_time(self) -> float | None:
        """The PostgreSQL server's clock (Unix time), None on SQLite (every process shares the host's)."""
        if self.dialect != "postgresql":
            return None
        row = self._conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(row[0])

    def drop_owner(self, owner: str) -> None:
        """End ``owner``'s lease now (a clean shutdown: its unsettled holds stop counting at once)."""
        with self._serial():
            self._conn.execute("DELETE FROM quota_owner WHERE owner = ?", (owner,))

    # -- settling ----------------------------------------------------------------------------------

    def settle(self, settlement: Settlement, now: float) -> None:
        """Settle one request: its scopes' budgets, its holds and window, the key's daily usage, in one
        transaction."""
        with self._serial():
            _write(self._conn, settlement, now)

    def try_settle(self, settlement: Settlement, now: float) -> bool:
        """:meth:`settle` without waiting: False (nothing written) when the store or the database is busy.

        The gateway settles on its event loop with this (one short transaction, no fsync in WAL mode
        with ``synchronous=NORMAL``), and only when it returns False hands :meth:`settle` to a thread:
        the thread hop cost more than the write itself (bench/README.md, "Gateway overhead").
        """
        return self._try(lambda c: _write(c, settlement, now)) is not None

    def record(
        self, scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str, tokens_in: int,
        tokens_out: int, charged: int | None = None, seconds: float = 0.0,
    ) -> None:
        """Add usage that held no reservation to its scopes' budgets and the key's daily usage.

        ``charged``: what the budgets are charged, when not ``tokens_in + tokens_out`` (unknown usage).
        """
        self.settle(
            _unreserved(scopes, period, day, key_id, model, tokens_in, tokens_out, charged, seconds), 0.0)

    def try_record(
        self, scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str, tokens_in: int,
        tokens_out: int, charged: int | None = None, seconds: float = 0.0,
    ) -> bool:
        """:meth:`record` without waiting: False (nothing written) when the store or the database is busy."""
        return self.try_settle(
            _unreserved(scopes, period, day, key_id, model, tokens_in, tokens_out, charged, seconds), 0.0)

    def daily(self, since: str | None = None) -> list[UsageRow]:
        """Daily usage rows from ``since`` (an ISO date) on, oldest first."""
        with self._serial():
            rows = self._conn.execute(
                "SELECT day, key_id, model, requests, tokens_in, tokens_out, seconds FROM daily_usage"
                " WHERE day >= ? ORDER BY day, key_id, model",
                (since or "",),
            ).fetchall()
        return [UsageRow(*r) for r in rows]


def _unreserved(
    scopes: tuple[str, ...], period: str, day: str, key_id: str, model: str, tokens_in: int, tokens_out: int,
    charged: int | None, seconds: float,
) -> Settlement:
    tokens = tokens_in + tokens_out if charged is None else charged
    # No hold rows carry the empty id, and charging what was "reserved" leaves every window as it is.
    return Settlement(Reservation("", scopes, tokens, period, 0), day, key_id, model, tokens_in, tokens_out,
                      tokens, seconds)


def _write(conn: Connection, s: Settlement, now: float) -> bool:
    """One settled request: its scopes' budget counters, its reservation and the key's daily usage."""
    r = s.reservation
    daily = (
        "INSERT INTO daily_usage (day, key_id, model, requests, tokens_in, tokens_out, seconds)"
        " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (day, key_id, model) DO UPDATE"
        " SET requests = daily_usage.requests + 1,"
        " tokens_in = daily_usage.tokens_in + excluded.tokens_in,"
        " tokens_out = daily_usage.tokens_out + excluded.tokens_out,"
        " seconds = daily_usage.seconds + excluded.seconds"
    )
    with conn.transaction():
        # Budget rows first, in scope order: the same locks in the same order as a reservation takes.
        # One round trip on PostgreSQL for all of it.
        conn.batch([*ledger.charge(r.scopes, r.period, s.charged), *ledger.release(r, s.charged, now),
                    (daily, (s.day, s.key_id, s.model, s.tokens_in, s.tokens_out, s.seconds))])
    return True
