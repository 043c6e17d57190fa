"""Fixtures for admission tests: a real audit log, initialised as 'bastion audit init' does."""

from __future__ import annotations

from pathlib import Path

from bastion.audit import AuditLog, create_keys
from bastion.config import AuditSettings


def audit_log(folder: Path) -> AuditSettings:
    """Settings of a new audit log in ``folder`` with its keys and first entry."""
    settings = AuditSettings(
        path=folder / "audit.db", signing_key=folder / "signing.key", body_key=folder / "body.key"
    )
    keys = create_keys(settings.signing_key, settings.body_key)
    log = AuditLog.open(settings)
    log.append_admin("audit.init", "test", details={"key_id": keys.key_id})
    log.close()
    return settings
