"""Record admin actions (keys, admission, policy) from the command line in the audit log."""

from __future__ import annotations

import getpass
import os
from typing import Any

from bastion.audit.log import AuditLog
from bastion.audit.records import EntryRef
from bastion.config import AuditSettings
from bastion.errors import ConfigError


def os_actor() -> str:
    """Who runs this command, as the audit log names them (``os:<user>``)."""
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (e.g. a container's arbitrary uid)
        return f"uid:{os.getuid()}"


def audit_ready(settings: AuditSettings) -> bool:
    """True once ``bastion audit init`` has made the log and its signing key."""
    return settings.path.exists() and settings.signing_key.exists()


def require_audit(settings: AuditSettings) -> None:
    """Raise ConfigError unless the audit log is initialised (the gateway refuses to run unaudited)."""
    if settings.enabled and not audit_ready(settings):
        raise ConfigError(
            f"the audit log is not initialised ({settings.path})",
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
