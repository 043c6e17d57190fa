"""The API key store (SQLite or PostgreSQL: :mod:`bastion.store`).

A key looks like ``bst_<id>_<secret>``: the 12-hex-digit id is public (it names the principal in logs
and the audit trail), the 256-bit secret is shown once and only its SHA-256 is stored. A salted slow
hash is unnecessary here because the secret is random, not a password; SHA-256 keeps the per-request
check to microseconds. Comparison uses ``hmac.compare_digest`` so timing reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bastion.errors import AuthenticationFailed, NotFound, UsageError, did_you_mean
from bastion.store import (
    ChangeWatch,
    Connection,
    Migrations,
    Target,
    count_changes,
    notify_changes,
    open_database,
)

PREFIX = "bst"
migrations = Migrations("keys")


@migrations
def m001_api_keys(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE api_keys (
             id TEXT PRIMARY KEY,
             name TEXT NOT NULL,
             secret_sha256 TEXT NOT NULL,
             models TEXT NOT NULL,           -- JSON list of model names, ["*"] for all
             groups TEXT NOT NULL DEFAULT '[]',
             created_at TEXT NOT NULL,
             revoked_at TEXT
           )"""
    )


@migrations
def m002_expiry_rotation_last_used(conn: Connection) -> None:
    conn.execute("ALTER TABLE api_keys ADD COLUMN expires_at TEXT")  # NULL: never expires
    conn.execute("ALTER TABLE api_keys ADD COLUMN last_used_at TEXT")  # written every LAST_USED_FLUSH_S
    conn.execute("ALTER TABLE api_keys ADD COLUMN rotated_from TEXT")  # id of the key it replaced


#: the columns the authentication cache reads (a change to any other, e.g. last_used_at, needs no reload)
_CACHED = ("id", "name", "secret_sha256", "models", "groups", "expires_at", "revoked_at")


@migrations
def m003_change_counter(conn: Connection) -> None:
    count_changes(conn, "api_keys", _CACHED)


@migrations
def m004_notify_changes(conn: Connection) -> None:
    notify_changes(conn, "api_keys")  # PostgreSQL: running gateways hear of a revocation at once


#: how often the store writes keys' last-used times (a write per request would cost the hot path)
LAST_USED_FLUSH_S = 30.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id (never the key), its name, groups and the models it may call."""

    key_id: str
    name: str
    models: tuple[str, ...]
    groups: tuple[str, ...] = ()
    #: the ids of the keys this one replaced (``keys rotate``), newest first: what they owned is its own
    predecessors: tuple[str, ...] = ()

    def owns(self, owner: str | None) -> bool:
        """Whether something recorded as owned by key id ``owner`` belongs to this caller."""
        return owner is not None and owner in self.identities

    @property
    def identities(self) -> tuple[str, ...]:
        """This key's id and its predecessors': rotating a key keeps the files and stores it owned."""
        return (self.key_id, *self.predecessors)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "models": list(self.models),
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public record."""

    id: str
    name: str
    models: tuple[str, ...]
    groups: tuple[str, ...]
    created_at: str
    revoked_at: str | None
    expires_at: str | None = None
    last_used_at: str | None = None
    rotated_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "models": list(self.models),
            "groups": list(self.groups),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "rotated_from": self.rotated_from,
        }


@dataclass(frozen=True)
class NewKey:
    """A just-created key: the only time the secret exists outside the caller's hands."""

    record: ApiKey
    key: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "key": self.key}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


#: every public column, in ApiKey's field order (a constant: never built from input)
_SELECT = (
    "SELECT id, name, models, groups, created_at, revoked_at, expires_at, last_used_at, rotated_from"
    " FROM api_keys"
)


def _row(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(row[0], row[1], tuple(json.loads(row[2])), tuple(json.loads(row[3])), *row[4:])


def _expired(expires_at: str | None, now: datetime) -> bool:
    return expires_at is not None and datetime.fromisoformat(expires_at) <= now


def _predecessors(key_id: str, replaced: dict[str, str]) -> tuple[str, ...]:
    """The keys ``key_id`` replaced, newest first (a cycle, written by hand, stops the walk)."""
    chain: list[str] = []
    current = replaced.get(key_id)
    while current is not None and current != key_id and current not in chain:
        chain.append(current)
        current = replaced.get(current)
    return tuple(chain)


class KeyStore:
    """Create, list, revoke and check API keys in the database at ``path`` (a file or PostgreSQL)."""

    def __init__(self, path: Target) -> None:
        self.path = path
        self._conn = open_database(path, migrations)
        self._lock = threading.Lock()
        # In-memory view for the request hot path, refreshed when another connection changes the keys
        # (a change counter kept by triggers), so a revoke from the CLI takes effect without a restart.
        self._cache: dict[str, tuple[str, Principal, str | None]] = {}
        self._watch = ChangeWatch(self._conn, "api_keys")
        self._last_used: dict[str, str] = {}
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush_last_used()
        self._conn.close()

    def create(
        self,
        name: str,
        models: list[str],
        groups: list[str] | None = None,
        expires_at: datetime | None = None,
        rotated_from: str | None = None,
    ) -> NewKey:
        """Create a key for ``name`` that may call ``models`` (``["*"]`` for every model)."""
        if not name.strip():
            raise UsageError("a key needs a non-empty name", param="name")
        if not models:
            raise UsageError(
                "a key needs at least one model it may call",
                hint="Pass --model NAME (or --model '*').",
                param="models",
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        expires = expires_at.astimezone(UTC).isoformat(timespec="seconds") if expires_at else None
        record = ApiKey(
            key_id, name, tuple(models), tuple(groups or ()), _now(), None, expires, None, rotated_from
        )
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "INSERT INTO api_keys (id, name, secret_sha256, models, groups, created_at, expires_at,"
                " rotated_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name,
                    _sha256(secret),
                    json.dumps(models),
                    json.dumps(groups or []),
                    record.created_at,
                    expires,
                    rotated_from,
                ),
            )
            self._watch.reset()  # our own commits do not change data_version for this connection
        return NewKey(record, f"{PREFIX}_{key_id}_{secret}")

    def get(self, key_id: str) -> ApiKey:
        """One key's public record; NotFound if there is none."""
        with self._lock:
            row = self._conn.execute(_SELECT + " WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            known = [k.id for k in self.list(include_revoked=True)]
            raise NotFound(
                f"no API key with id {key_id!r}",
                hint=did_you_mean(key_id, known, "List keys with 'bastion keys list' (revoke takes the id)."),
            )
        return _row(row)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        """Every key's public record, oldest first."""
        sql = _SELECT
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        self.flush_last_used()
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql + " ORDER BY created_at, id")]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id``; it stops working on the gateway's next request."""
        with self._lock, self._conn.transaction():
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id)
            )
            self._watch.reset()
        rec = self.get(key_id)
        if cur.rowcount == 0:
            raise UsageError(f"API key {key_id} was already revoked at {rec.revoked_at}")
        return rec

    def rotate(
        self, key_id: str, overlap: timedelta, expires_at: datetime | None = None
    ) -> tuple[NewKey, ApiKey]:
        """A new key with the same name, models and groups; the old one expires after ``overlap``.

        Clients switch to the new key during the overlap; after it the old key fails like any expired
        key (sooner if it already expired sooner). Returns the new key and the old key's record.
        """
        old = self.get(key_id)
        if old.revoked_at is not None:
            raise UsageError(f"API key {key_id} is revoked; create a new key instead of rotating it")
        new = self.create(old.name, list(old.models), list(old.groups), expires_at, rotated_from=old.id)
        ends = datetime.now(UTC) + overlap
        if old.expires_at is None or ends < datetime.fromisoformat(old.expires_at):
            with self._lock, self._conn.transaction():
                self._conn.execute(
                    "UPDATE api_keys SET expires_at = ? WHERE id = ?",
                    (ends.isoformat(timespec="seconds"), key_id),
                )
                self._watch.reset()
        return new, self.get(key_id)

    def authenticate(self, presented: str | None) -> Principal:
        """Return the principal for a presented key, or raise :class:`AuthenticationFailed`."""
        if not presented:
            raise AuthenticationFailed("no API key was sent")
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise AuthenticationFailed("the API key is malformed")
        self._refresh()
        entry = self._cache.get(parts[1])
        digest = _sha256(parts[2])
        # compare even when the id is unknown, so timing does not tell ids apart
        expected = entry[0] if entry else "0" * 64
        if not hmac.compare_digest(expected, digest) or entry is None:
            raise AuthenticationFailed("the API key is unknown or revoked")
        now = datetime.now(UTC)
        if _expired(entry[2], now):
            raise AuthenticationFailed(
                f"the API key {parts[1]} expired at {entry[2]}",
                hint="Ask the administrator for a new key ('bastion keys rotate' or 'bastion keys create').",
            )
        self._last_used[parts[1]] = now.isoformat(timespec="seconds")
        if time.monotonic() - self._flushed > LAST_USED_FLUSH_S:
            self.flush_last_used()
        return entry[1]

    def flush_last_used(self) -> None:
        """Write the keys' last-used times gathered since the last flush (also done on close)."""
        with self._lock:
            pending, self._last_used = self._last_used, {}
            self._flushed = time.monotonic()
            if pending:
                with self._conn.transaction():
                    self._conn.executemany(
                        "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                        [(t, k) for k, t in pending.items()],
                    )

    def _refresh(self) -> None:
        with self._lock:
            if not self._watch.changed():
                return
            rows = self._conn.execute(
                "SELECT id, name, secret_sha256, models, groups, expires_at, revoked_at, rotated_from"
                " FROM api_keys"
            ).fetchall()
            replaced = {r[0]: r[7] for r in rows if r[7]}
            self._cache = {
                r[0]: (
                    r[2],
                    Principal(r[0], r[1], tuple(json.loads(r[3])), tuple(json.loads(r[4])),
                              _predecessors(r[0], replaced)),
                    r[5],
                )
                for r in rows
                if r[6] is None
            }
