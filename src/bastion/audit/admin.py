"""Record admin actions (keys, admission, policy) from the command line in the audit log."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Protocol

from bastion.audit.db_store import log_exists
from bastion.audit.heads import SignedTreeHead
from bastion.audit.keys import KeyFiles, create_keys, existing_keys
from bastion.audit.log import AuditLog
from bastion.audit.records import EntryRef
from bastion.config import AuditSettings
from bastion.errors import ConfigError, UsageError


def os_actor() -> str:
    """Who runs this command, as the audit log names them (``os:<user>``)."""
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (e.g. a container's arbitrary uid)
        return f"uid:{os.getuid()}"


def audit_ready(settings: AuditSettings) -> bool:
    """True once ``bastion audit init`` has made the log and its signing key."""
    return settings.signing_key.exists() and log_exists(settings.target())


def require_audit(settings: AuditSettings) -> None:
    """Raise ConfigError unless the audit log is initialised (the gateway refuses to run unaudited)."""
    if settings.enabled and not audit_ready(settings):
        raise ConfigError(
            f"the audit log is not initialised ({settings.target()})",
            hint="Run 'bastion audit init' once (or set audit.enabled = false to serve without a record).",
        )


def record_admin(
    settings: AuditSettings,
    action: str,
    before_digest: str | None = None,
    after_digest: str | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> EntryRef | None:
    """Append one admin action durably and sign a tree head over it; None when auditing is off."""
    if not settings.enabled:
        return None
    require_audit(settings)
    log = AuditLog.open(settings)
    try:
        return log.append_admin(action, actor or os_actor(), before_digest, after_digest, details)
    finally:
        log.close()


class AuditSink(Protocol):
    """Where a capability writes its admin entries (:class:`AdminAudit` over the configured log, or
    the gateway's own writer)."""

    def record(
        self,
        action: str,
        details: dict[str, Any],
        before_digest: str | None = None,
        after_digest: str | None = None,
    ) -> None:
        """Append one admin entry durably; raise if it cannot be written."""
        ...


class AdminAudit:
    """The audit sink admission writes to: admin entries in the configured log (nothing when off)."""

    def __init__(self, settings: AuditSettings, actor: str | None = None) -> None:
        self.settings = settings
        self.actor = actor

    def record(
        self,
        action: str,
        details: dict[str, Any],
        before_digest: str | None = None,
        after_digest: str | None = None,
    ) -> None:
        """Append one admin entry durably (see :func:`record_admin`)."""
        record_admin(self.settings, action, before_digest, after_digest, details, self.actor)
def initialise_log(settings: AuditSettings) -> tuple[KeyFiles, EntryRef, SignedTreeHead | None, list[str]]:
    """Make the audit log: keys (an operator's complete existing set is reused), the database and a
    signed first entry; also returns warnings about where the keys are.

    Used by ``bastion audit init`` and ``bastion init``. Refuses an existing log: a new key over it
    would leave its signed heads unverifiable.
    """
    if log_exists(settings.target()):
        raise UsageError(
            f"an audit log already exists at {settings.target()}",
            hint="Keep using it (its keys are audit.signing_key and audit.body_key), or set audit.path to a "
            "new file (with store.url: point it at a new database) to start a new log.",
        )
    keys = existing_keys(settings.signing_key, settings.body_key) or create_keys(
        settings.signing_key, settings.body_key
    )
    warnings = []
    if isinstance(settings.target(), Path) and settings.signing_key.resolve().is_relative_to(
        settings.path.resolve().parent
    ):
        warnings.append(
            f"the signing key {settings.signing_key} is in the database's folder: whoever can write the log"
            " can read the key and re-sign a rewritten history (set audit.signing_key elsewhere)"
        )
    log = AuditLog.open(settings)
    ref = log.append_admin("audit.init", os_actor(), details={"key_id": keys.key_id})
    return keys, ref, log.close(), warnings
