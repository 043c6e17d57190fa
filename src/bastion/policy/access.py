"""Per-request access decisions for the gateway: Cedar, cached per (key id, model, action), reloadable."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cedarpy

from bastion.errors import DataLossBlocked, PermissionDenied
from bastion.policy.decision import NAMESPACE, Decision, _policy_set, evaluate
from bastion.policy.source import PolicySource, load_policy, schema

ACTIONS = ("chat", "completion", "embedding")
#: what the gateway may do with a request's findings, in the order it asks the policy
TRANSFORMS = ("none", "pseudonymise", "redact")
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


@dataclass(frozen=True)
class DlpContext:
    """What data-loss prevention found in a request, as Cedar sees it: types and counts, never values."""

    types: frozenset[str] = frozenset()
    markings: int = 0
    personal: int = 0
    secrets: int = 0
    marking_level: int = -1
    caveats: frozenset[str] = frozenset()
    transform: str = "none"

    @property
    def empty(self) -> bool:
        """True when nothing was found."""
        return not (self.markings or self.personal or self.secrets)

    def to_json(self) -> dict[str, Any]:
        """The Cedar ``context.dlp`` record."""
        return {
            "types": sorted(self.types),
            "markings": self.markings,
            "personal": self.personal,
            "secrets": self.secrets,
            "marking_level": self.marking_level,
            "caveats": sorted(self.caveats),
            "transform": self.transform,
        }


@dataclass(frozen=True)
class DocumentResource:
    """What Cedar sees of a document in a retrieval collection (the ``Bastion::Document`` entity).

    ``groups`` are the groups whose members may read it; ``classification`` is on the clearance scale.
    """

    id: str
    collection: str
    classification: int
    groups: frozenset[str]

    def entity(self) -> dict[str, Any]:
        """The Cedar entity: attributes, and its collection as parent."""
        return {
            "uid": {"type": f"{NAMESPACE}::Document", "id": self.id},
            "attrs": {
                "name": self.id,
                "collection": self.collection,
                "classification": self.classification,
                "groups": [
                    {"__entity": {"type": f"{NAMESPACE}::Group", "id": g}} for g in sorted(self.groups)
                ],
            },
            "parents": [{"type": f"{NAMESPACE}::Collection", "id": self.collection}],
        }


NO_FINDINGS = DlpContext()
_CACHE_MAX = 65536


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
        self._cache: dict[tuple[str, ModelResource, str, DlpContext], Decision] = {}
        self._documents: dict[tuple[str, tuple[str, ...], DocumentResource], bool] = {}
        self._version = 0
        self._source, self._set = self._load()

    def _load(self) -> tuple[PolicySource, cedarpy.PolicySet]:
        source = load_policy(self._spec)  # raises UsageError with FILE:LINE on a bad file
        return source, _policy_set(source)

    @property
    def origin(self) -> str:
        """Where the current policy came from."""
        return self._source.origin

    def reload(self, clearance: Mapping[str, int] | None = None) -> None:
        """Re-read the policy file (and take the groups' ``clearance``, when given) and drop cached
        decisions; a bad file raises and the old policy and clearances stay."""
        source, policy_set = self._load()
        with self._lock:
            self._source, self._set = source, policy_set
            if clearance is not None:
                self._clearance = dict(clearance)
            self._cache.clear()
            self._documents.clear()
            self._version += 1

    @property
    def version(self) -> int:
        """Goes up on every ``reload()``: what callers key their own derived caches on."""
        return self._version

    def clearance(self, principal: PrincipalLike) -> int:
        """The principal's clearance: the highest level among its groups."""
        return max((self._clearance.get(g, 0) for g in principal.groups), default=0)

    def authorize(
        self, principal: PrincipalLike, action: str, model: ModelResource, dlp: DlpContext = NO_FINDINGS
    ) -> Decision:
        """Decide whether ``principal`` may run ``action`` (chat, completion, embedding) on ``model``,
        sending what ``dlp`` describes (nothing found, by default)."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        if dlp.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {dlp.transform!r}")
        # The whole model record (ceiling, locality) is part of the key so a model re-configured at a
        # higher level (or moved off this host) is never served from a decision made for the old one;
        # findings are types and counts only, never values.
        key = (principal.key_id, model, action, dlp)
        with self._lock:
            hit = self._cache.get(key)
            source, policy_set = self._source, self._set
        if hit is not None:
            return hit
        decision = self._decide(source, policy_set, principal, action, model, dlp)
        with self._lock:
            # Only cache against the policy the decision was made with (a reload may have happened).
            if self._source is source:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()  # findings make the key space open-ended: bound it
                self._cache[key] = decision
        return decision

    def readable(self, principal: PrincipalLike, documents: Iterable[DocumentResource]) -> set[str]:
        """Ids of the ``documents`` Cedar lets ``principal`` ``retrieve``; decisions are cached.

        The cache key holds the whole document record (collection, classification, groups) and the
        principal's groups, so a document relabelled at ingest is decided again, never served from a
        decision made for its old label. Misses go to Cedar in one batch; a statement that errors
        denies (fail closed), as for every other decision.
        """
        groups = tuple(sorted(principal.groups))
        allowed: set[str] = set()
        missing: list[DocumentResource] = []
        with self._lock:
            source, policy_set = self._source, self._set
            for doc in documents:
                hit = self._documents.get((principal.key_id, groups, doc))
                if hit is None:
                    missing.append(doc)
                elif hit:
                    allowed.add(doc.id)
        if not missing:
            return allowed
        decided = self._decide_documents(policy_set, principal, missing)
        with self._lock:
            if self._source is source:
                if len(self._documents) + len(decided) > _CACHE_MAX:
                    self._documents.clear()
                for doc, ok in zip(missing, decided, strict=True):
                    self._documents[(principal.key_id, groups, doc)] = ok
        allowed.update(doc.id for doc, ok in zip(missing, decided, strict=True) if ok)
        return allowed

    def _principal_entities(
        self, principal: PrincipalLike, groups: set[str]
    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The ApiKey entity (in its groups) and the Group entities ``groups`` names."""
        key_uid = {"type": f"{NAMESPACE}::ApiKey", "id": principal.key_id}
        key = {
            "uid": key_uid,
            "attrs": {
                "name": principal.name,
                "models": list(principal.models),
                "clearance": self.clearance(principal),
            },
            "parents": [{"type": f"{NAMESPACE}::Group", "id": g} for g in principal.groups],
        }
        group_entities = [
            {"uid": {"type": f"{NAMESPACE}::Group", "id": g}, "attrs": {}, "parents": []}
            for g in sorted(groups)
        ]
        return key_uid, [key, *group_entities]

    def _decide_documents(
        self, policy_set: cedarpy.PolicySet, principal: PrincipalLike, documents: list[DocumentResource]
    ) -> list[bool]:
        group_ids = set(principal.groups)
        for doc in documents:
            group_ids |= doc.groups
        key_uid, key_entities = self._principal_entities(principal, group_ids)
        entities: list[dict[str, Any]] = [
            *key_entities,
            *(
                {"uid": {"type": f"{NAMESPACE}::Collection", "id": c}, "attrs": {}, "parents": []}
                for c in {d.collection for d in documents}
            ),
            *(doc.entity() for doc in documents),
        ]
        requests = [
            {
                "principal": key_uid,
                "action": {"type": f"{NAMESPACE}::Action", "id": "retrieve"},
                "resource": {"type": f"{NAMESPACE}::Document", "id": doc.id},
                "context": {},
            }
            for doc in documents
        ]
        results = cedarpy.is_authorized_batch(requests, policy_set, entities, schema())
        # Fail closed: an erroring statement is skipped by Cedar, so an erroring forbid would not deny.
        return [r.allowed and not list(r.diagnostics.errors) for r in results]

    def dlp_transform(
        self, principal: PrincipalLike, action: str, model: ModelResource, dlp: DlpContext
    ) -> tuple[str | None, Decision]:
        """The first transform (none, pseudonymise, redact) the policy permits for these findings.

        Returns ``(None, decision)`` with the decision for sending them unchanged when no transform is
        permitted: the request must be blocked.
        """
        first: Decision | None = None
        for transform in TRANSFORMS if not dlp.empty else ("none",):
            ctx = DlpContext(**{**dlp.__dict__, "transform": transform})
            decision = self.authorize(principal, action, model, ctx)
            if decision.allowed:
                return transform, decision
            first = first or decision
        assert first is not None
        return None, first

    def _decide(
        self,
        source: PolicySource,
        policy_set: cedarpy.PolicySet,
        principal: PrincipalLike,
        action: str,
        model: ModelResource,
        dlp: DlpContext,
    ) -> Decision:
        key_uid, key_entities = self._principal_entities(principal, set(principal.groups))
        entities: list[dict[str, Any]] = [
            *key_entities,
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
            "context": {"dlp": dlp.to_json()},
        }
        inputs = {
            "key_id": principal.key_id,
            "model": model.to_json(),
            "clearance": self.clearance(principal),
            "groups": list(principal.groups),
            "dlp": dlp.to_json(),
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

    def reload(self, clearance: Mapping[str, int] | None = None) -> None:
        """Re-read the policy (and take new group clearances); a bad file raises, the old one stays."""
        self.policy.reload(clearance)

    def authorize(self, principal: PrincipalLike, action: str, model: ModelResource) -> None:
        """Return if Cedar allows ``principal`` to ``action`` on ``model``; raise PermissionDenied if not."""
        decision = self.policy.authorize(principal, action, model)
        if decision.allowed:
            return
        raise PermissionDenied(
            f"API key {principal.key_id} ({principal.name}) may not {action} with model {model.name!r}:"
            f" {_cite(decision)}",
            hint=f"See policy {self.policy.origin}; 'bastion policy check' lists its statements.",
            param="model",
        )

    def visible(self, principal: PrincipalLike, models: Iterable[ModelResource]) -> list[str]:
        """The names among ``models`` that Cedar lets ``principal`` use for at least one action."""
        return [
            m.name for m in models if any(self.policy.authorize(principal, a, m).allowed for a in ACTIONS)
        ]

    def dlp_transform(
        self, principal: PrincipalLike, action: str, model: ModelResource, dlp: DlpContext
    ) -> str:
        """The transform the policy requires to send ``dlp``'s findings to ``model``; DataLossBlocked if
        it permits none (the message names the finding types and the statements that decided)."""
        transform, decision = self.policy.dlp_transform(principal, action, model, dlp)
        if transform is not None:
            return transform
        raise DataLossBlocked(
            f"the request carries {', '.join(sorted(dlp.types))} and may not be sent to model "
            f"{model.name!r} in any form: {_cite(decision)}",
            hint=f"Remove that data or use a model the policy allows it for; policy {self.policy.origin}.",
            param="model",
        )


def _cite(decision: Decision) -> str:
    """The statements that decided, by id and line, for an error message."""
    return ", ".join(f"{r.id} (line {r.line})" for r in decision.reasons) or "no permit statement matched"
