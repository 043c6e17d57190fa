"""Admitted models: admission (vet -> hash -> identify -> decide -> sign -> record) and load-time checks."""

from bastion.registry.admit import Assessment, admit, assess, weights_digest
from bastion.registry.store import Admission, Registry
from bastion.registry.verify import verify_for_serving

__all__ = ["Admission", "Assessment", "Registry", "admit", "assess", "verify_for_serving", "weights_digest"]
