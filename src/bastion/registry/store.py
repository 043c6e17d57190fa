"""The registry of admitted models (SQLite, in the same database as the API keys).

One row per admission: the signed manifest (a model-signing bundle), the weights digest, the vet
verdict and findings, the AI-BOM, the catalog match and the Cedar decision. At most one active
admission per name; a revocation keeps the row (the record of what was once allowed stays).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.errors import NotFound, UsageError
from bastion.store import Migrations, open_database

migrations = Migrations("registry")


@migrations
def m001_admitted_models(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE admitted_models (
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             path TEXT NOT NULL,
             weights_digest TEXT NOT NULL,
             root_digest TEXT NOT NULL,
             signature TEXT NOT NULL,      -- OpenSSF model-signing bundle (JSON)
             signer TEXT NOT NULL,         -- key hint of the organisation key that signed
             verdict TEXT NOT NULL,
             findings TEXT NOT NULL,       -- JSON list
             bom TEXT NOT NULL,            -- CycloneDX 1.6 JSON
             identity TEXT NOT NULL,       -- catalog identification JSON
             decision TEXT NOT NULL,       -- Cedar decision JSON
             policy TEXT NOT NULL,
             admitted_at TEXT NOT NULL,
             admitted_by TEXT NOT NULL,
             revoked_at TEXT,
             revoked_by TEXT,
             revoke_reason TEXT
           )"""
    )
    conn.execute(
        "CREATE UNIQUE INDEX admitted_models_active ON admitted_models (name) WHERE revoked_at IS NULL"
    )


#: every column, in Admission's field order (a constant: never built from input)
_SELECT = (
    "SELECT id, name, path, weights_digest, root_digest, signature, signer, verdict, findings, bom,"
    " identity, decision, policy, admitted_at, admitted_by, revoked_at, revoked_by, revoke_reason"
    " FROM admitted_models"
)


@dataclass(frozen=True)
class Admission:
    """One admission record."""

    id: int
    name: str
    path: str
    weights_digest: str
    root_digest: str
    signature: bytes
    signer: str
    verdict: str
    findings: list[dict[str, Any]]
    bom: dict[str, Any]
    identity: dict[str, Any]
    decision: dict[str, Any]
    policy: str
    admitted_at: str
    admitted_by: str
    revoked_at: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """The record as a mapping; ``full`` adds the signature, BOM and the whole decision."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "weights_digest": self.weights_digest,
            "root_digest": self.root_digest,
            "signer": self.signer,
            "verdict": self.verdict,
            "findings": len(self.findings),
            "identity": self.identity.get("claimed_identity"),
            "confidence": self.identity.get("confidence"),
            "decision": self.decision.get("decision"),
            "policy": self.policy,
            "admitted_at": self.admitted_at,
            "admitted_by": self.admitted_by,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
        }
        if full:
            out.update(
                findings=self.findings,
                identity=self.identity,
                decision=self.decision,
                bom=self.bom,
                signature=json.loads(self.signature),
            )
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row(r: tuple[Any, ...]) -> Admission:
    return Admission(
        r[0], r[1], r[2], r[3], r[4], r[5].encode(), r[6], r[7], json.loads(r[8]), json.loads(r[9]),
        json.loads(r[10]), json.loads(r[11]), r[12], r[13], r[14], r[15], r[16], r[17],
    )


class Registry:
    """Admitted models in the SQLite database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_database(path, migrations)
        self._lock = threading.Lock()
        self._active: frozenset[str] = frozenset()
        self._version = -1

    def close(self) -> None:
        self._conn.close()

    def record(
        self,
        *,
        name: str,
        path: str,
        weights_digest: str,
        root_digest: str,
        signature: bytes,
        signer: str,
        verdict: str,
        findings: list[dict[str, Any]],
        bom: dict[str, Any],
        identity: dict[str, Any],
        decision: dict[str, Any],
        policy: str,
        admitted_by: str,
    ) -> Admission:
        """Record an admission in one transaction; UsageError if ``name`` is already admitted."""
        with self._lock:
            try:
                with self._conn:
                    cur = self._conn.execute(
                        "INSERT INTO admitted_models (name, path, weights_digest, root_digest, signature,"
                        " signer, verdict, findings, bom, identity, decision, policy, admitted_at,"
                        " admitted_by)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            name, path, weights_digest, root_digest, signature.decode(), signer, verdict,
                            json.dumps(findings), json.dumps(bom), json.dumps(identity), json.dumps(decision),
                            policy, _now(), admitted_by,
                        ),
                    )
            except sqlite3.IntegrityError as exc:
                raise UsageError(
                    f"a model named {name!r} is already admitted",
                    hint=f"Revoke it first ('bastion models revoke {name}') or choose another --name.",
                ) from exc
            self._version = -1
            row_id = cur.lastrowid
        got = self._by_id(int(row_id or 0))
        assert got is not None
        return got

    def _by_id(self, row_id: int) -> Admission | None:
        with self._lock:
            r = self._conn.execute(_SELECT + " WHERE id = ?", (row_id,)).fetchone()
        return _row(r) if r else None

    def get(self, name: str) -> Admission:
        """The active admission of ``name``; NotFound if there is none."""
        with self._lock:
            r = self._conn.execute(
                _SELECT + " WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
        if r is None:
            raise NotFound(
                f"no model named {name!r} is admitted",
                hint="List admitted models with 'bastion models list'; admit with 'bastion admit'.",
            )
        return _row(r)

    def list(self, include_revoked: bool = False) -> list[Admission]:
        """Admissions, oldest first."""
        sql = _SELECT
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql + " ORDER BY id")]

    def revoke(self, name: str, actor: str, reason: str = "") -> Admission:
        """Revoke the active admission of ``name``; a running gateway stops serving it at once."""
        current = self.get(name)
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE admitted_models SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
                (_now(), actor, reason, current.id),
            )
            self._version = -1
        got = self._by_id(current.id)
        assert got is not None
        return got

    def is_active(self, name: str) -> bool:
        """Whether ``name`` is admitted now; cheap enough for every request (re-read only on change)."""
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                rows = self._conn.execute("SELECT name FROM admitted_models WHERE revoked_at IS NULL")
                self._active = frozenset(r[0] for r in rows)
                self._version = version
            return name in self._active
