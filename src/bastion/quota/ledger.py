"""Reservations shared by every worker and replica: the SQL, one code path for SQLite and PostgreSQL.

Tables (quota component, migration ``m003_shared_reservations``):

``budget_usage`` (scope, period)
    Settled spend per budget period, and **the lock of a scope**: a reservation first makes sure a row
    exists for each of its scopes, then locks them in one ``SELECT ... ORDER BY scope FOR UPDATE``
    (scope name order on every replica, so two reservations never wait on each other crosswise). On
    SQLite ``BEGIN IMMEDIATE`` takes the file's write lock instead. Everything below is read and
    written only under these locks, so the check and the write are one atomic step across processes.
``quota_hold`` (id, scope)
    The tokens an unsettled request holds against each budget. It counts only while its owner's lease
    (``quota_owner``) is live: a replica renews its lease every ``lease_s / 3`` seconds; one killed
    stops renewing and its holds stop counting ``lease_s`` later (released, not charged: what it spent
    is unknown, see README "Quotas").
``quota_window`` (scope, second)
    Requests and tokens per one-second bucket. The sliding minute is the sum of the buckets with
    ``second > floor(now) - 60``: a request counts for between 59 and 60 seconds after it was made
    (precision one second; it never counts for longer than a minute). Buckets older than two minutes
    are pruned in the background, never by a request.

Clocks are the replicas' own (``time.time``): keep them synchronised (NTP); a skew of s seconds moves
the edge of one replica's window by s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from bastion.quota.limiter import WINDOW_S, Limiter, Limits, Reservation, ScopeUse
from bastion.store import Connection

T = TypeVar("T")

#: buckets are pruned once this old (seconds): twice the window, so a prune never touches a bucket a
#: settling request adjusts (settle adjusts only buckets still in the window), even with some skew
PRUNE_AFTER_S = 2 * WINDOW_S


# Statements over a request's scopes; {scopes} becomes one "?" per scope (the names are parameters).
LOCK = "SELECT scope, tokens FROM budget_usage WHERE period = ? AND scope IN ({scopes}) ORDER BY scope"
HELD = ("SELECT h.scope, SUM(h.tokens) FROM quota_hold h JOIN quota_owner o ON o.owner = h.owner"
        " WHERE h.period = ? AND o.expires > ? AND h.scope IN ({scopes}) GROUP BY h.scope")
MINUTE = ("SELECT scope, SUM(requests), SUM(tokens), MIN(second) FROM quota_window"
          " WHERE second > ? AND scope IN ({scopes}) GROUP BY scope")
ADJUST = "UPDATE quota_window SET tokens = tokens + ? WHERE second = ? AND scope IN ({scopes})"


def _sql(template: str, n: int) -> str:
    return template.replace("{scopes}", ", ".join("?" * n))


def reserve(
    conn: Connection, limiter: Limiter, limits: dict[str, Limits], tokens: int, period: str, owner: str,
    now: float, hold_id: str,
) -> Reservation:
    """Count one request of ``tokens`` in every scope of ``limits`` in one transaction, all or nothing
    (QuotaExceeded, nothing written, when one scope has no room)."""
    names = sorted(limits)  # the lock order, the same on every replica
    second = int(now)
    if not names:
        return Reservation(hold_id, (), tokens, period, second)
    n = len(names)
    with conn.transaction():
        conn.executemany(
            "INSERT INTO budget_usage (scope, period, tokens) VALUES (?, ?, 0)"
            " ON CONFLICT (scope, period) DO NOTHING",
            [(s, period) for s in names],
        )
        spent = dict(conn.execute(_sql(LOCK, n) + conn.for_update(), (period, *names)).fetchall())
        held = dict(conn.execute(_sql(HELD, n), (period, now, *names)).fetchall())
        window = {r[0]: r[1:] for r in conn.execute(_sql(MINUTE, n), (second - WINDOW_S, *names))}
        uses = []
        for scope, lim in limits.items():  # the caller's order: the key's refusal is named first
            requests, used, oldest = window.get(scope, (0, 0, None))
            uses.append(ScopeUse(scope, lim, int(requests), int(used), oldest,
                                 int(spent.get(scope, 0)) + int(held.get(scope, 0))))
        room = limiter.admit(uses, tokens, now)
        windowed = [s for s in names if limits[s].rpm is not None or limits[s].tpm is not None]
        conn.executemany(
            "INSERT INTO quota_window (scope, second, requests, tokens) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (scope, second) DO UPDATE SET requests = quota_window.requests + 1,"
            " tokens = quota_window.tokens + excluded.tokens",
            [(s, second, tokens) for s in windowed],
        )
        budgeted = [s for s in names if limits[s].budget_tokens is not None]
        conn.executemany(
            "INSERT INTO quota_hold (id, scope, owner, period, tokens) VALUES (?, ?, ?, ?, ?)",
            [(hold_id, s, owner, period, tokens) for s in budgeted],
        )
    return Reservation(hold_id, tuple(names), tokens, period, second, room)


def release(conn: Connection, reservation: Reservation, charged: int, now: float) -> None:
    """Inside the settling transaction (after the budget rows are charged, which locks them): drop the
    reservation's holds and put what was really used in its window bucket instead of the upper bound."""
    conn.execute("DELETE FROM quota_hold WHERE id = ?", (reservation.id,))
    delta = charged - reservation.tokens
    if delta and reservation.scopes and reservation.second > int(now) - WINDOW_S:
        conn.execute(_sql(ADJUST, len(reservation.scopes)), (delta, reservation.second, *reservation.scopes))

def renew(conn: Connection, owner: str, expires: float) -> None:
    """Extend ``owner``'s lease: its holds count until ``expires``."""
    conn.execute(
        "INSERT INTO quota_owner (owner, expires) VALUES (?, ?)"
        " ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires",
        (owner, expires),
    )


def sweep(conn: Connection, now: float) -> int:
    """Delete the holds of owners whose lease ran out (they no longer count), those owners, and window
    buckets too old to matter. Returns the holds deleted. Each statement is its own short transaction."""
    ids = [r[0] for r in conn.execute(
        "SELECT DISTINCT h.id FROM quota_hold h LEFT JOIN quota_owner o ON o.owner = h.owner"
        " WHERE o.expires IS NULL OR o.expires <= ?", (now,))]
    for hold_id in ids:
        # One id at a time, like settle deletes it: both lock its rows in primary-key order, so a late
        # settle of a stalled replica cannot deadlock with the sweep.
        conn.execute("DELETE FROM quota_hold WHERE id = ?", (hold_id,))
    conn.execute("DELETE FROM quota_owner WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM quota_window WHERE second <= ?", (int(now) - PRUNE_AFTER_S,))
    return len(ids)


def nowait(attempt: Callable[[], T]) -> T | None:
    """``attempt()`` on a SQLite connection that does not wait for the write lock: None when another
    process holds it (the transaction was rolled back: nothing was written)."""
    try:
        return attempt()
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        raise

