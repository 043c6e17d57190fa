"""The audit log as a witness of revocations the registry database could lose.

Anyone who can write ``bastion.db`` can delete a revocation row (after dropping the trigger that
refuses it). They cannot remove the ``model.revoke`` entry from the audit log without breaking its
RFC 6962 tree: every leaf carries its index, heads are signed with a key that is not in the database,
and ``bastion audit verify`` (against a head kept elsewhere) reports the gap. So the registry treats
every digest named by a ``model.revoke`` entry as revoked, whatever its own tables say.

Why not sign revocations with the organisation key instead: a signature proves who revoked, but the
attack is *removing* the revocation, and a missing signed row looks exactly like no row. Revocation
needs no key on purpose: making a model unservable is the safe direction, and whoever can write the
database can already stop a model by other means.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson

from bastion.config import Settings
from bastion.errors import BastionError
from bastion.registry.store import Registry
from bastion.store import PostgresTarget, Target, open_database

log = logging.getLogger("bastion.registry")

#: the admin action ``bastion models revoke`` records (cli/models.py)
REVOKE_ACTION = "model.revoke"


#: the admin action ``bastion admit`` records (cli/models.py)
ADMIT_ACTION = "model.admit"


def _admin_leaves_postgres(target: PostgresTarget, action: str) -> list[Any] | None:
    import psycopg  # only PostgreSQL users load it

    try:
        conn = open_database(target)  # no migrations: a witness never creates the log's tables
        try:
            return conn.execute(
                "SELECT leaf FROM audit_entries WHERE kind = 'admin' AND position(? in leaf) > 0",
                (f'"action":"{action}"'.encode(),),
            ).fetchall()
        finally:
            conn.close()
    except (BastionError, psycopg.Error) as exc:  # down, or no log yet: as an unreadable SQLite file
        log.warning("cannot read %s entries from the audit log %s: %s", action, target, exc)
        return None


def _admin_entries(path: Target, action: str) -> list[dict[str, Any]]:
    """The admin entries of the audit log at ``path`` with this action, read-only ([] if unreadable)."""
    if isinstance(path, PostgresTarget):
        leaves = _admin_leaves_postgres(path, action)
        return [] if leaves is None else _decoded(leaves, action)
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute(
                # kind is indexed; the LIKE only narrows admin leaves (few), the JSON decides.
                "SELECT leaf FROM audit_entries WHERE kind = 'admin' AND CAST(leaf AS TEXT) LIKE ?",
                (f'%"action":"{action}"%',),
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("cannot read %s entries from the audit log %s: %s", action, path, exc)
        return []
    return _decoded(rows, action)


def _decoded(rows: list[Any], action: str) -> list[dict[str, Any]]:
    entries = []
    for (leaf,) in rows:
        try:
            doc = orjson.loads(leaf)
        except orjson.JSONDecodeError:
            continue  # a damaged leaf is for 'bastion audit verify' to report
        if isinstance(doc, dict) and doc.get("action") == action:
            if not isinstance(doc.get("details"), dict):
                doc["details"] = {}
            entries.append(doc)
    return entries


def _strings(*values: object) -> set[str]:
    return {v for v in values if isinstance(v, str) and v}


def revoked_in_audit_log(path: Target) -> set[str]:
    """Weights and root digests named by ``model.revoke`` entries of the audit log at ``path``.

    Reads the database read-only. An unreadable log gives an empty set and a warning: the registry
    keeps every revocation it has already seen, so this never un-revokes anything.
    """
    digests: set[str] = set()
    for doc in _admin_entries(path, REVOKE_ACTION):
        details = doc["details"]
        listed = details.get("digests")
        digests |= _strings(doc.get("before_digest"), details.get("root_digest"),
                            *(listed if isinstance(listed, list) else ()))
    return digests


def admitted_in_audit_log(path: Target, name: str) -> set[str]:
    """Weights and root digests the audit log saw admitted as ``name`` (its ``model.admit`` entries).

    What a revocation of ``name`` must cover whatever the registry row says now: the row's digest
    columns are not signed, and a database writer who edited them before a revocation steered it onto
    bytes nobody serves (red team, wave 2). Earlier admissions under the name were revoked before the
    name could be admitted again, so naming them too revokes nothing that was not revoked already.
    """
    digests: set[str] = set()
    for doc in _admin_entries(path, ADMIT_ACTION):
        if doc["details"].get("name") == name:
            digests |= _strings(doc.get("after_digest"), doc["details"].get("root_digest"))
    return digests


def open_registry(settings: Settings) -> Registry:
    """The registry of ``settings``, with the audit log as witness of revocations when auditing is on."""
    audit_path = settings.audit.target()
    witness = (lambda: revoked_in_audit_log(audit_path)) if settings.audit.enabled else None
    return Registry(settings.store.target(), witness=witness)
