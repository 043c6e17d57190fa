"""Withdrawals: a model, a provider or a country taken out of every route, by a signed, audited decision.

"A government letter on a Friday afternoon": the organisation must stop sending work to a deployment
now, on every running gateway, without a restart, and keep working on what remains. A withdrawal is a
row in the gateway's database (``store.path`` or ``store.url``), signed with the organisation key;
gateways re-read the active set when the withdrawals table changes (a change counter kept by triggers,
checked when ``PRAGMA data_version`` says the file changed), so the next request already skips it.

A restoration is signed too. Someone who can write the database but does not hold the organisation key
can add withdrawals (which only makes the gateway more careful) but cannot lift one: a restoration
whose signature does not verify is ignored. Deleting the row outright is not detectable here; the audit
log records every withdrawal and restoration as the witness.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import NotFound, UsageError
from bastion.signing.keys import hash_for
from bastion.store import (
    ChangeWatch,
    Connection,
    Migrations,
    Target,
    count_changes,
    notify_changes,
    open_database,
)

Kind = Literal["model", "provider", "country"]
#: the kind of an active withdrawal whose signature does not verify: it covers every deployment
TAMPERED = "tampered"
migrations = Migrations("withdrawal")


@migrations
def m001_withdrawals(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE withdrawals (
             id INTEGER PRIMARY KEY,
             kind TEXT NOT NULL,            -- model | provider | country
             target TEXT NOT NULL,
             reason TEXT NOT NULL,
             actor TEXT NOT NULL,
             created_at TEXT NOT NULL,
             signature TEXT NOT NULL,       -- organisation key over the withdrawal's fields
             restored_at TEXT,
             restored_by TEXT,
             restore_signature TEXT
           )"""
    )


@migrations
def m002_change_counter(conn: Connection) -> None:
    count_changes(conn, "withdrawals")


@migrations
def m003_notify_changes(conn: Connection) -> None:
    notify_changes(conn, "withdrawals")  # PostgreSQL: running gateways hear of a withdrawal at once


@dataclass(frozen=True)
class Withdrawal:
    """One withdrawal, active until a signed restoration."""

    id: int
    kind: str
    target: str
    reason: str
    actor: str
    created_at: str
    signature: str
    restored_at: str | None = None
    restored_by: str | None = None
    restore_signature: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def payload(self) -> bytes:
        """The bytes the withdrawal signature covers."""
        return _canonical(["withdraw", self.kind, self.target, self.reason, self.actor, self.created_at])

    def restore_payload(self) -> bytes:
        """The bytes the restoration signature covers (it names the withdrawal it lifts)."""
        return _canonical(["restore", self.id, self.signature, self.restored_at, self.restored_by])

    def matches(self, name: str, provider: str | None, country: str | None) -> bool:
        """Whether this withdrawal covers a deployment with that name, provider and country.

        A withdrawal of no known kind (see :data:`TAMPERED`) covers every deployment: fail closed.
        """
        values = {"model": name, "provider": provider, "country": country}
        if self.kind not in values:
            return True
        value = values[self.kind]
        return value is not None and value.casefold() == self.target.casefold()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _sign(key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    return base64.b64encode(key.sign(payload, ec.ECDSA(hash_for(key.public_key())))).decode()


def _verifies(key: ec.EllipticCurvePublicKey, payload: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    try:
        key.verify(base64.b64decode(signature), payload, ec.ECDSA(hash_for(key)))
    except (InvalidSignature, ValueError):
        return False
    return True


_SELECT = (
    "SELECT id, kind, target, reason, actor, created_at, signature, restored_at, restored_by,"
    " restore_signature FROM withdrawals"
)


class WithdrawalStore:
    """Withdrawals in the database at ``path`` (a file or PostgreSQL); the active set is cached until it
    changes."""

    def __init__(self, path: Target, public_key: ec.EllipticCurvePublicKey | None = None) -> None:
        self._conn = open_database(path, migrations)
        self._lock = threading.Lock()
        self._public_key = public_key
        self._watch = ChangeWatch(self._conn, "withdrawals")
        self._active: tuple[Withdrawal, ...] = ()

    def close(self) -> None:
        self._conn.close()

    def withdraw(
        self, kind: Kind, target: str, reason: str, actor: str, key: ec.EllipticCurvePrivateKey
    ) -> Withdrawal:
        """Record and sign a withdrawal; running gateways skip the target from their next request."""
        if not target.strip() or not reason.strip():
            raise UsageError("a withdrawal needs a target and a reason", hint="Pass --reason '...'.")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        draft = Withdrawal(0, kind, target, reason, actor, now, "")
        signature = _sign(key, draft.payload())
        with self._lock, self._conn.transaction():
            cur = self._conn.execute(
                "INSERT INTO withdrawals (kind, target, reason, actor, created_at, signature)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (kind, target, reason, actor, now, signature),
            )
            row_id = int(cur.fetchone()[0])
            self._watch.reset()
        return self.get(row_id)

    def restore(self, withdrawal_id: int, actor: str, key: ec.EllipticCurvePrivateKey) -> Withdrawal:
        """Lift a withdrawal with a signed restoration."""
        current = self.get(withdrawal_id)
        if current.restored_at is not None:
            raise UsageError(f"withdrawal {withdrawal_id} was already lifted at {current.restored_at}")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        lifted = Withdrawal(**{**current.to_json(), "restored_at": now, "restored_by": actor})
        signature = _sign(key, lifted.restore_payload())
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "UPDATE withdrawals SET restored_at = ?, restored_by = ?, restore_signature = ? WHERE id = ?",
                (now, actor, signature, withdrawal_id),
            )
            self._watch.reset()
        return self.get(withdrawal_id)

    def get(self, withdrawal_id: int) -> Withdrawal:
        with self._lock:
            row = self._conn.execute(_SELECT + " WHERE id = ?", (withdrawal_id,)).fetchone()
        if row is None:
            raise NotFound(f"no withdrawal {withdrawal_id}", hint="List them with 'bastion withdraw --list'.")
        return Withdrawal(*row)

    def list(self) -> list[Withdrawal]:
        """Every withdrawal, lifted ones included, oldest first."""
        with self._lock:
            return [Withdrawal(*r) for r in self._conn.execute(_SELECT + " ORDER BY id")]

    def active(self) -> tuple[Withdrawal, ...]:
        """Withdrawals in force: not lifted by a restoration whose signature verifies (cheap per request)."""
        with self._lock:
            if not self._watch.changed():
                return self._active
            rows = [Withdrawal(*r) for r in self._conn.execute(_SELECT + " ORDER BY id")]
            self._active = tuple(self._checked(w) for w in rows if not self._lifted(w))
            return self._active

    def _checked(self, w: Withdrawal) -> Withdrawal:
        """``w`` as signed, or, if its signature does not verify, a withdrawal of everything.

        The withdrawal's own signature was never checked: ``UPDATE withdrawals SET target = 'x'`` lifted
        a withdrawal without the organisation key (red team, wave 2). What an edited row withdrew can
        no longer be known, so it withdraws every deployment until the organisation restores it.
        """
        if self._public_key is None or _verifies(self._public_key, w.payload(), w.signature):
            return w
        edited = f"withdrawal {w.id} was edited: its signature does not verify"
        return replace(w, kind=TAMPERED, reason=edited)

    def _lifted(self, w: Withdrawal) -> bool:
        if w.restored_at is None:
            return False
        if self._public_key is None:
            return True  # no organisation key configured: nothing to check against
        return _verifies(self._public_key, w.restore_payload(), w.restore_signature)
