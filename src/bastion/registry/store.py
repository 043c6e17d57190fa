"""The registry of admitted models (in the same database as the API keys: a file or PostgreSQL).

One row per admission: the signed manifest (a model-signing bundle), the weights digest, the vet
verdict and findings, the AI-BOM, the catalog match and the Cedar decision. At most one active
admission per name; a revocation keeps the row (the record of what was once allowed stays).

Revocation is of *bytes*, not of a name (issue 10, findings 6 and 7). ``revoke(name)`` marks the
name's admission and appends a row to ``revocations`` naming its weights and root digests; from then
on no admission of those bytes is servable, whatever its name or row: a row copied with the same
signature, a re-admission, or ``UPDATE ... SET revoked_at = NULL`` all leave the digest revoked.
The revocation list only grows: triggers refuse updates and deletes (a guard against mistakes, not
against someone who can drop a trigger), and a :class:`Registry` never forgets a revocation it has
seen. Against deletion by someone with write access to the database, the audit log is the witness:
``revoked_in_audit_log`` reads the ``model.revoke`` entries of the Merkle log, which cannot be removed
without breaking the signed tree heads, and the gateway adds them to this set at start-up and whenever
the registry changes (see :mod:`bastion.registry.witness`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.errors import IntegrityError, NotFound, PolicyDenied, UsageError, did_you_mean
from bastion.store import (
    ChangeWatch,
    Connection,
    ConstraintViolation,
    Migrations,
    Target,
    count_changes,
    notify_changes,
    open_database,
)

migrations = Migrations("registry")


@migrations
def m001_admitted_models(conn: Connection) -> None:
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


@migrations
def m002_revocations_by_digest(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE revocations (
             id INTEGER PRIMARY KEY,
             admission_id INTEGER NOT NULL,
             name TEXT NOT NULL,
             weights_digest TEXT NOT NULL,
             root_digest TEXT NOT NULL,
             revoked_at TEXT NOT NULL,
             revoked_by TEXT NOT NULL,
             reason TEXT NOT NULL
           )"""
    )
    conn.execute("CREATE INDEX revocations_weights ON revocations (weights_digest)")
    conn.execute(
        "INSERT INTO revocations (admission_id, name, weights_digest, root_digest, revoked_at, revoked_by,"
        " reason) SELECT id, name, weights_digest, root_digest, revoked_at, coalesce(revoked_by, ''),"
        " coalesce(revoke_reason, '') FROM admitted_models WHERE revoked_at IS NOT NULL"
    )
    # Append-only by construction: these catch a mistaken UPDATE/DELETE (an attacker with the file
    # can drop them; the audit log and the gateway's memory are what hold against that).
    if conn.dialect == "postgresql":
        conn.execute(
            "CREATE FUNCTION revocations_refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'revocations are append-only'; END $$"
        )
        conn.execute(
            "CREATE FUNCTION admitted_models_refuse_unrevoke() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'a revocation cannot be undone'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER revocations_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON revocations"
            " FOR EACH STATEMENT EXECUTE FUNCTION revocations_refuse()"
        )
        conn.execute(
            "CREATE TRIGGER admitted_models_no_unrevoke BEFORE UPDATE OF revoked_at ON admitted_models"
            " FOR EACH ROW WHEN (OLD.revoked_at IS NOT NULL)"
            " EXECUTE FUNCTION admitted_models_refuse_unrevoke()"
        )
        return
    conn.execute(
        "CREATE TRIGGER revocations_no_update BEFORE UPDATE ON revocations"
        " BEGIN SELECT RAISE(ABORT, 'revocations are append-only'); END"
    )
    conn.execute(
        "CREATE TRIGGER revocations_no_delete BEFORE DELETE ON revocations"
        " BEGIN SELECT RAISE(ABORT, 'revocations are append-only'); END"
    )
    conn.execute(
        "CREATE TRIGGER admitted_models_no_unrevoke BEFORE UPDATE OF revoked_at ON admitted_models"
        " WHEN OLD.revoked_at IS NOT NULL"
        " BEGIN SELECT RAISE(ABORT, 'a revocation cannot be undone'); END"
    )


@migrations
def m003_change_counters(conn: Connection) -> None:
    count_changes(conn, "admitted_models")
    count_changes(conn, "revocations")


@migrations
def m004_notify_changes(conn: Connection) -> None:
    notify_changes(conn, "admitted_models")  # PostgreSQL: running gateways hear of a revocation at once
    notify_changes(conn, "revocations")


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
    try:
        return Admission(
            r[0], r[1], r[2], r[3], r[4], r[5].encode(), r[6], r[7], json.loads(r[8]), json.loads(r[9]),
            json.loads(r[10]), json.loads(r[11]), r[12], r[13], r[14], r[15], r[16], r[17],
        )
    except (TypeError, ValueError, AttributeError) as exc:
        # Someone wrote this row by hand. Refuse the model it names, clearly, not every model: a
        # JSONDecodeError here killed the gateway at start-up with a traceback (red team, wave 2).
        raise IntegrityError(
            f"registry row {r[0]} ({r[1]!r}) is damaged: {exc}",
            hint="The registry database was edited; restore it from a backup, or revoke and admit again.",
        ) from exc


@dataclass(frozen=True)
class AdmittedRef:
    """Which admission a running gateway verified and loaded: its row and the digests of its bytes.

    The digests are the ones the gateway computed from the sealed bytes it serves (not the row's
    columns), so revocation checks use values a database edit cannot change.
    """

    id: int
    name: str
    weights_digest: str
    root_digest: str


@dataclass(frozen=True)
class _Snapshot:
    active_ids: frozenset[int]
    revoked_digests: frozenset[str]


class Registry:
    """Admitted models in the database at ``path`` (a SQLite file or a PostgreSQL target).

    ``witness`` (optional) returns digests revoked according to a record kept elsewhere (the audit
    log); they are merged into the revocation set at every refresh, so deleting a revocation row
    does not bring a model back.
    """

    def __init__(self, path: Target, witness: Callable[[], Iterable[str]] | None = None) -> None:
        self.path = path
        self._conn = open_database(path, migrations)
        self._lock = threading.Lock()
        self._witness = witness
        #: every digest this instance has ever seen revoked: a running gateway never un-revokes
        self._seen_revoked: set[str] = set()
        self._snapshot = _Snapshot(frozenset(), frozenset())
        self._watch = ChangeWatch(self._conn, "admitted_models", "revocations")

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
        before_commit: Callable[[], None] | None = None,
    ) -> Admission:
        """Record an admission in one transaction; UsageError if ``name`` is already admitted.

        ``before_commit`` runs after the row is written and before it is committed (admission writes
        its audit entry there): if it raises, the row is rolled back. PolicyDenied if these bytes were
        revoked: a revocation is final for the bytes it names.
        """
        revoked = self.revocation_of(weights_digest, root_digest)
        if revoked is not None:
            raise PolicyDenied(
                f"these bytes ({weights_digest}) were revoked as {revoked['name']!r}"
                f" at {revoked['revoked_at']} by {revoked['revoked_by']}"
                + (f" ({revoked['reason']})" if revoked["reason"] else "")
                + "; a revocation is final for the bytes it names",
                hint="Admit a different build of the model; revoked weights are never served again.",
            )
        with self._lock:
            try:
                with self._conn.transaction():
                    cur = self._conn.execute(
                        "INSERT INTO admitted_models (name, path, weights_digest, root_digest, signature,"
                        " signer, verdict, findings, bom, identity, decision, policy, admitted_at,"
                        " admitted_by)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (
                            name, path, weights_digest, root_digest, signature.decode(), signer, verdict,
                            json.dumps(findings), json.dumps(bom), json.dumps(identity), json.dumps(decision),
                            policy, _now(), admitted_by,
                        ),
                    )
                    row_id = int(cur.fetchone()[0])
                    if before_commit is not None:
                        before_commit()
            except ConstraintViolation as exc:
                raise UsageError(
                    f"a model named {name!r} is already admitted",
                    hint=f"Revoke it first ('bastion models revoke {name}') or choose another --name.",
                ) from exc
            self._watch.reset()
        got = self._by_id(row_id)
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
                hint=did_you_mean(
                    name,
                    (a.name for a in self.list()),
                    "List admitted models with 'bastion models list'; admit with 'bastion admit'.",
                ),
            )
        return _row(r)

    def list(self, include_revoked: bool = False) -> list[Admission]:
        """Admissions, oldest first."""
        sql = _SELECT
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql + " ORDER BY id")]

    def revoke(self, name: str, actor: str, reason: str = "", also: Iterable[str] = ()) -> Admission:
        """Revoke the active admission of ``name`` and, with it, its bytes under every name.

        ``also``: more digests to revoke with it, known from a record the database cannot change (the
        audit log's admissions of ``name``): the row's digest columns are not signed. A running gateway
        stops serving them on its next request.
        """
        current = self.get(name)
        extra = sorted(set(also) - {current.weights_digest, current.root_digest})
        digests = [current.weights_digest, current.root_digest, *extra]
        now = _now()
        with self._lock, self._conn.transaction():
            # Every active row of the same bytes goes with it, so 'models list' shows what serves.
            self._conn.executemany(
                "UPDATE admitted_models SET revoked_at = ?, revoked_by = ?, revoke_reason = ?"
                " WHERE revoked_at IS NULL AND (id = ? OR weights_digest = ? OR root_digest = ?)",
                [(now, actor, reason, current.id, d, d) for d in digests],
            )
            self._conn.executemany(
                "INSERT INTO revocations (admission_id, name, weights_digest, root_digest, revoked_at,"
                " revoked_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(current.id, name, current.weights_digest, current.root_digest, now, actor, reason)]
                + [(current.id, name, d, d, now, actor, reason) for d in extra],
            )
            self._watch.reset()
        self._seen_revoked.update(digests)
        got = self._by_id(current.id)
        assert got is not None
        return got

    def revocation_of(self, *digests: str) -> dict[str, str] | None:
        """The first revocation naming any of ``digests`` (registry rows or the witness), else None."""
        with self._lock:
            for digest in digests:
                r = self._conn.execute(
                    "SELECT name, revoked_at, revoked_by, reason FROM revocations"
                    " WHERE weights_digest = ? OR root_digest = ? ORDER BY id LIMIT 1",
                    (digest, digest),
                ).fetchone()
                if r is not None:
                    return {"name": r[0], "revoked_at": r[1], "revoked_by": r[2], "reason": r[3]}
        witnessed = set(self._witness()) if self._witness is not None else set()
        for digest in digests:
            if digest in witnessed or digest in self._seen_revoked:
                # Known from the audit log (or this process's memory) after the row was removed here.
                return {"name": "(row deleted)", "revoked_at": "(see the audit log)",
                        "revoked_by": "a model.revoke entry of the audit log", "reason": ""}
        return None

    def _refresh(self) -> _Snapshot:
        # Caller holds the lock. Re-read only when another connection changed the admissions or the
        # revocations (change counters kept by triggers, looked at when PRAGMA data_version says the
        # file changed), so the request path costs one pragma while nothing changes, and a write to
        # another table of the same file (a quota usage row per request) costs no reload, and no read
        # of the audit log.
        if self._watch.changed():
            active = frozenset(
                r[0] for r in self._conn.execute("SELECT id FROM admitted_models WHERE revoked_at IS NULL")
            )
            revoked = {
                d
                for r in self._conn.execute(
                    "SELECT weights_digest, root_digest FROM revocations UNION ALL"
                    " SELECT weights_digest, root_digest FROM admitted_models WHERE revoked_at IS NOT NULL"
                )
                for d in r
            }
            if self._witness is not None:
                revoked.update(self._witness())
            self._seen_revoked |= revoked
            self._snapshot = _Snapshot(active, frozenset(self._seen_revoked))
        return self._snapshot

    def still_admitted(self, admission_id: int | None, weights_digest: str | None) -> bool:
        """Whether the admission a gateway verified may still answer: its row is active and its
        bytes (``weights_digest``, as the gateway computed it) are not revoked under any name.

        Cheap enough for every request: one ``PRAGMA data_version`` while nothing changes.
        """
        if admission_id is None or weights_digest is None:
            return False
        with self._lock:
            snap = self._refresh()
            if admission_id not in snap.active_ids:
                # The admission it verified is gone (revoked, or its row deleted): these bytes stay
                # refused in this process even if the row comes back with revoked_at NULL. The digest
                # here is the one computed from the sealed bytes, unlike the row's unsigned columns a
                # revocation was recorded from (red team, wave 2).
                self._seen_revoked.add(weights_digest)
                return False
        return weights_digest not in snap.revoked_digests and weights_digest not in self._seen_revoked
