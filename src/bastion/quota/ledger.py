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

Clocks: on PostgreSQL every replica stamps buckets and leases with the server's clock (read at each
lease renewal, see ``UsageStore``), so a replica whose own clock is off cannot spend a minute twice; on
SQLite every process shares the host's clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from bastion.quota.limiter import WINDOW_S, Limiter, Limits, Reservation, ScopeUse
from bastion.store import Connection
from bastion.store.connection import Params

T = TypeVar("T")

#: buckets are pruned once this old (seconds): twice the window, so a prune never touches a bucket a
#: settling request adjusts (settle adjusts only buckets still in the window), even with some skew
PRUNE_AFTER_S = 2 * WINDOW_S


# Statements over a request's scopes: {rows} becomes one "(?, ...)" row per scope and {scopes} one "?"
# per scope (the names themselves are always parameters).
#: makes sure each scope's row exists, locks it (a conflicting upsert locks the row, in VALUES order,
#: until the transaction ends: the same on both backends) and reads the period's settled spend
LOCK = ("INSERT INTO budget_usage (scope, period, tokens) VALUES {rows} ON CONFLICT (scope, period)"
        " DO UPDATE SET tokens = budget_usage.tokens RETURNING scope, tokens")
#: live holds and the minute's buckets of the locked scopes, in one round trip
USE = ("SELECT 'h', h.scope, SUM(h.tokens), 0, 0 FROM quota_hold h JOIN quota_owner o ON o.owner = h.owner"
       " WHERE h.period = ? AND o.expires > ? AND h.scope IN ({scopes}) GROUP BY h.scope"
       " UNION ALL SELECT 'w', scope, SUM(requests), SUM(tokens), MIN(second) FROM quota_window"
       " WHERE second > ? AND scope IN ({scopes}) GROUP BY scope")
COUNT = ("INSERT INTO quota_window (scope, second, requests, tokens) VALUES {rows}"
         " ON CONFLICT (scope, second) DO UPDATE SET requests = quota_window.requests + 1,"
         " tokens = quota_window.tokens + excluded.tokens")
HOLD = "INSERT INTO quota_hold (id, scope, owner, period, tokens) VALUES {rows}"
CHARGE = ("INSERT INTO budget_usage (scope, period, tokens) VALUES {rows} ON CONFLICT (scope, period)"
          " DO UPDATE SET tokens = budget_usage.tokens + excluded.tokens")
ADJUST = "UPDATE quota_window SET tokens = tokens + ? WHERE second = ? AND scope IN ({scopes})"


def _sql(template: str, n: int, width: int = 1) -> str:
    """``template`` for ``n`` scopes (rows of ``width`` parameters)."""
    row = "(" + ", ".join("?" * width) + ")"
    return template.replace("{rows}", ", ".join([row] * n)).replace("{scopes}", ", ".join("?" * n))


def _flat(rows: Sequence[tuple[object, ...]]) -> list[object]:
    return [v for row in rows for v in row]


def reserve(
    conn: Connection, limiter: Limiter, limits: dict[str, Limits], tokens: int, period: str, owner: str,
    now: float, hold_id: str,
) -> Reservation:
    """Count one request of ``tokens`` in every scope of ``limits`` in one transaction, all or nothing
    (QuotaExceeded, nothing written, when one scope has no room)."""
    # A scope without any limit is only charged on settle: nothing to check, so nothing to lock (quotas
    # on for usage records alone cost no transaction here).
    names = sorted(s for s, lim in limits.items() if lim != Limits())  # the lock order, on every replica
    second = int(now)
    if not names:
        return Reservation(hold_id, tuple(sorted(limits)), tokens, period, second)
    n = len(names)
    with conn.transaction():
        # A reservation need not outlive a server crash (the requests holding it fail with the server, and
        # what they spent is charged durably when they settle): its commit does not wait for the WAL flush.
        fast = [("SET LOCAL synchronous_commit = off", ())] if conn.dialect == "postgresql" else []
        # One round trip on PostgreSQL: the lock, then (the locks held) what the scopes have used.
        *_, locked, use = conn.batch([
            *fast,
            (_sql(LOCK, n, 3), _flat([(s, period, 0) for s in names])),
            (_sql(USE, n), (period, now, *names, second - WINDOW_S, *names)),
        ])
        spent = dict(locked)
        held: dict[str, int] = {}
        window: dict[str, tuple[int, int, int]] = {}
        for kind, scope, a, b, c in use:
            if kind == "h":
                held[scope] = int(a)
            else:
                window[scope] = (int(a), int(b), int(c))
        uses = []
        for scope, lim in limits.items():  # the caller's order: the key's refusal is named first
            if scope not in spent:
                continue  # no limit
            requests, used, oldest = window.get(scope, (0, 0, None))
            budget = int(spent[scope]) + held.get(scope, 0)
            uses.append(ScopeUse(scope, lim, requests, used, oldest, budget))
        room = limiter.admit(uses, tokens, now)
        windowed = [(s, second, 1, tokens) for s in names
                    if limits[s].rpm is not None or limits[s].tpm is not None]
        budgeted = [(hold_id, s, owner, period, tokens) for s in names if limits[s].budget_tokens is not None]
        writes = [(_sql(COUNT, len(windowed), 4), _flat(windowed))] if windowed else []
        writes += [(_sql(HOLD, len(budgeted), 5), _flat(budgeted))] if budgeted else []
        conn.batch(writes)
    return Reservation(hold_id, tuple(sorted(limits)), tokens, period, second, room)


def charge(scopes: tuple[str, ...], period: str, tokens: int) -> list[tuple[str, Params]]:
    """The statement adding ``tokens`` to each scope's spend this period (in scope order: the order in
    which reservations lock), none without scopes."""
    if not scopes:
        return []
    return [(_sql(CHARGE, len(scopes), 3), _flat([(s, period, tokens) for s in sorted(scopes)]))]


def release(reservation: Reservation, charged: int, now: float) -> list[tuple[str, Params]]:
    """The statements, after :func:`charge` in the settling transaction (which locks the scopes), that
    drop the reservation's holds and put what was really used in its window bucket instead of the
    upper bound."""
    out: list[tuple[str, Params]] = [("DELETE FROM quota_hold WHERE id = ?", (reservation.id,))]
    delta = charged - reservation.tokens
    if delta and reservation.scopes and reservation.second > int(now) - WINDOW_S:
        out.append((_sql(ADJUST, len(reservation.scopes)), (delta, reservation.second, *reservation.scopes)))
    return out


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

