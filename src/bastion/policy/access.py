"""Per-request access decisions for the gateway: Cedar, cached per (key id, model, action), reloadable."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cedarpy

from bastion.errors import PermissionDenied
from bastion.policy.decision import NAMESPACE, Decision, _policy_set, evaluate
from bastion.policy.source import PolicySource, load_policy

ACTIONS = ("chat", "completion", "embedding")
#: Clearance levels by name, lowest first. Data-classification ceilings use the same scale.
LEVELS = {"public": 0, "official": 1, "secret": 2, "top-secret": 3}


class PrincipalLike(Protocol):
    """What the gateway knows about a caller (``bastion.keys.Principal`` has exactly this shape)."""

    @property
    def key_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def models(self) -> tuple[str, ...]: ...
    @property
    def groups(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class ModelResource:
    """What Cedar sees of a served model (the ``Bastion::ServedModel`` entity).

    ``classification_ceiling`` is the highest data classification the model holds or may return;
    ``local`` is False for a model that runs outside this host (an upstream), so a policy can keep data
    that may not leave the building away from it.
    """

    name: str
    classification_ceiling: int = 0
    local: bool = True

    def to_json(self) -> dict[str, Any]:
        """The model as a plain mapping (the entity's attributes)."""
        return {"name": self.name, "classification_ceiling": self.classification_ceiling, "local": self.local}


class AccessPolicy:
    """Authorises gateway requests with Cedar; decisions are cached until ``reload()``.

    The cache key is (key id, model name, model ceiling, locality, action). That is sound because
    everything the policy sees about a key (its models and groups) is fixed when the key is created; a
    changed policy or group clearance takes effect on ``reload()``.
    Clearance comes from groups: ``group_clearance`` maps a group name to a level, and a principal's
    clearance is the highest level of its groups (0 when none is listed).
    """

    def __init__(self, policy: str | Path, group_clearance: Mapping[str, int] | None = None) -> None:
        self._spec = policy
        self._clearance = dict(group_clearance or {})
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, int, bool, str], Decision] = {}
        self._source, self._set = self._load()

    def _load(self) -> tuple[PolicySource, cedarpy.PolicySet]:
        source = load_policy(self._spec)  # raises UsageError with FILE:LINE on a bad file
        return source, _policy_set(source)

    @property
    def origin(self) -> str:
        """Where the current policy came from."""
        return self._source.origin

    def reload(self) -> None:
        """Re-read the policy file and drop cached decisions; a bad file raises and the old policy stays."""
        source, policy_set = self._load()
        with self._lock:
            self._source, self._set = source, policy_set
            self._cache.clear()

    def clearance(self, principal: PrincipalLike) -> int:
        """The principal's clearance: the highest level among its groups."""
        return max((self._clearance.get(g, 0) for g in principal.groups), default=0)

    def authorize(self, principal: PrincipalLike, action: str, model: ModelResource) -> Decision:
        """Decide whether ``principal`` may run ``action`` (chat, completion, embedding) on ``model``."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        # The ceiling and locality are part of the key so a model re-configured at a higher level (or
        # moved off this host) is never served from a decision made for the old one.
        key = (principal.key_id, model.name, model.classification_ceiling, model.local, action)
        with self._lock:
            hit = self._cache.get(key)
            source, policy_set = self._source, self._set
        if hit is not None:
            return hit
        decision = self._decide(source, policy_set, principal, action, model)
        with self._lock:
            # Only cache against the policy the decision was made with (a reload may have happened).
            if self._source is source:
                self._cache[key] = decision
        return decision

    def _decide(
        self,
        source: PolicySource,
        policy_set: cedarpy.PolicySet,
        principal: PrincipalLike,
        action: str,
        model: ModelResource,
    ) -> Decision:
        key_uid = {"type": f"{NAMESPACE}::ApiKey", "id": principal.key_id}
        entities: list[dict[str, Any]] = [
            {
                "uid": key_uid,
                "attrs": {
                    "name": principal.name,
                    "models": list(principal.models),
                    "clearance": self.clearance(principal),
                },
                "parents": [{"type": f"{NAMESPACE}::Group", "id": g} for g in principal.groups],
            },
            *(
                {"uid": {"type": f"{NAMESPACE}::Group", "id": g}, "attrs": {}, "parents": []}
                for g in principal.groups
            ),
            {
                "uid": {"type": f"{NAMESPACE}::ServedModel", "id": model.name},
                "attrs": model.to_json(),
                "parents": [],
            },
        ]
        request = {
            "principal": key_uid,
            "action": {"type": f"{NAMESPACE}::Action", "id": action},
            "resource": {"type": f"{NAMESPACE}::ServedModel", "id": model.name},
            "context": {},
        }
        inputs = {
            "key_id": principal.key_id,
            "model": model.to_json(),
            "clearance": self.clearance(principal),
            "groups": list(principal.groups),
        }
        return evaluate(source, policy_set, request, entities, action, inputs)


class CedarAuthorizer:
    """The gateway's ``Authorizer`` seam (``bastion.serve.auth``) backed by an :class:`AccessPolicy`.

    Every decision is Cedar's: a denial raises PermissionDenied naming the statements that decided it,
    and ``visible`` lists what a principal may call by asking Cedar about each model (not by reading the
    key's model list, which is only one input of the policy).
    """

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    @property
    def origin(self) -> str:
        """Where the policy in force came from."""
        return self.policy.origin

    def reload(self) -> None:
        """Re-read the policy; a bad file raises and the old policy stays in force."""
        self.policy.reload()

    def authorize(self, principal: PrincipalLike, action: str, model: ModelResource) -> None:
        """Return if Cedar allows ``principal`` to ``action`` on ``model``; raise PermissionDenied if not."""
        decision = self.policy.authorize(principal, action, model)
        if decision.allowed:
            return
        cited = (
            ", ".join(f"{r.id} (line {r.line})" for r in decision.reasons) or "no permit statement matched"
        )
        raise PermissionDenied(
            f"API key {principal.key_id} ({principal.name}) may not {action} with model {model.name!r}:"
            f" {cited}",
            hint=f"See policy {self.policy.origin}; 'bastion policy check' lists its statements.",
            param="model",
        )

    def visible(self, principal: PrincipalLike, models: Iterable[ModelResource]) -> list[str]:
        """The names among ``models`` that Cedar lets ``principal`` use for at least one action."""
        return [
            m.name for m in models if any(self.policy.authorize(principal, a, m).allowed for a in ACTIONS)
        ]
