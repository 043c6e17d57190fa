"""Decide with Cedar: admission of model artifacts and per-request access to served models.

Public face used by admission and the gateway: ``admission_decision``, ``AccessPolicy``, ``Decision``.
"""

from bastion.policy.access import (
    LEVELS,
    TRANSFORMS,
    AccessPolicy,
    CedarAuthorizer,
    DlpContext,
    DocumentResource,
    ModelResource,
    PrincipalLike,
)
from bastion.policy.decision import ArtifactAttributes, Decision, Organisation, Reason, admission_decision
from bastion.policy.source import PACKS, PolicyProblem, PolicySource, load_policy, read_policy, schema_text

__all__ = [
    "LEVELS",
    "PACKS",
    "AccessPolicy",
    "CedarAuthorizer",
    "ArtifactAttributes",
    "DlpContext",
    "DocumentResource",
    "Decision",
    "ModelResource",
    "Organisation",
    "PrincipalLike",
    "PolicyProblem",
    "PolicySource",
    "Reason",
    "TRANSFORMS",
    "admission_decision",
    "load_policy",
    "read_policy",
    "schema_text",
]
