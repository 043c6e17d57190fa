"""Admitted models: admission (read once, vet, identify, decide, sign, record) and load-time checks."""

from bastion.audit import AuditSink
from bastion.registry.admit import Assessment, Declaration, admit, assess
from bastion.registry.sealed import SealedModel, seal
from bastion.registry.store import Admission, AdmittedRef, Registry
from bastion.registry.verify import ServedWeights, open_admitted, seal_unverified, verify_for_serving
from bastion.registry.witness import admitted_in_audit_log, open_registry, revoked_in_audit_log

__all__ = [
    "Admission",
    "AdmittedRef",
    "Assessment",
    "AuditSink",
    "Declaration",
    "Registry",
    "SealedModel",
    "ServedWeights",
    "admit",
    "admitted_in_audit_log",
    "assess",
    "open_admitted",
    "open_registry",
    "revoked_in_audit_log",
    "seal",
    "seal_unverified",
    "verify_for_serving",
]
