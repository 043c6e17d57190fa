"""Prove: a tamper-evident audit log of every gateway request and admin action.

An RFC 6962 Merkle tree of records in SQLite, signed tree heads (Ed25519), inclusion and consistency
proofs, and a one-pass verifier. See :mod:`bastion.audit.log` for the exact durability guarantee.
"""

from bastion.audit.admin import (
    AdminAudit,
    AuditSink,
    audit_ready,
    initialise_log,
    os_actor,
    record_admin,
    require_audit,
)
from bastion.audit.db_store import DbStore, log_exists, open_store
from bastion.audit.heads import SignedTreeHead
from bastion.audit.keys import BodyCipher, KeyFiles, create_keys, load_public_key, public_key_path
from bastion.audit.log import AuditLog
from bastion.audit.records import AdminRecord, EntryRef, RequestRecord
from bastion.audit.store import Filters, Store

__all__ = [
    "AdminAudit",
    "AdminRecord",
    "AuditLog",
    "AuditSink",
    "BodyCipher",
    "EntryRef",
    "Filters",
    "KeyFiles",
    "RequestRecord",
    "SignedTreeHead",
    "DbStore",
    "Store",
    "create_keys",
    "audit_ready",
    "initialise_log",
    "load_public_key",
    "os_actor",
    "record_admin",
    "require_audit",
    "log_exists",
    "open_store",
    "public_key_path",
]
