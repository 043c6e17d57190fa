"""AccessPolicy: Cedar per request, cached per (key, model, action), changed by reload()."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import UsageError
from bastion.keys import KeyStore, Principal
from bastion.policy import AccessPolicy, ModelResource
from bastion.policy.source import _read_text

SMOL = ModelResource("smollm2", classification_ceiling=0)
SECRET_MODEL = ModelResource("analyst-model", classification_ceiling=2)


def test_key_may_call_only_its_models() -> None:
    ap = AccessPolicy("enterprise")
    alice = Principal("k1", "alice", ("smollm2",), ())
    allowed = ap.authorize(alice, "chat", SMOL)
    assert allowed.allowed and [r.id for r in allowed.reasons] == ["access.key-model-list"]
    assert not ap.authorize(alice, "chat", ModelResource("gemma3")).allowed


def test_star_key_and_principal_from_the_real_key_store(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "b.db")
    created = store.create("ops", ["*"], ["ops"])
    principal = store.authenticate(created.key)
    assert AccessPolicy("sovereign-strict").authorize(principal, "embedding", SMOL).allowed


def test_clearance_below_the_models_ceiling_is_forbidden() -> None:
    ap = AccessPolicy("sovereign-strict", group_clearance={"analysts": 2, "staff": 1})
    analyst = Principal("k2", "bob", ("*",), ("staff", "analysts"))
    staff = Principal("k3", "carol", ("*",), ("staff",))
    assert ap.clearance(analyst) == 2
    assert ap.authorize(analyst, "completion", SECRET_MODEL).allowed
    d = ap.authorize(staff, "completion", SECRET_MODEL)
    assert not d.allowed and [r.id for r in d.reasons] == ["access.clearance-below-ceiling"]


def test_decisions_are_cached_and_reload_applies_a_changed_policy(tmp_path: Path) -> None:
    f = tmp_path / "p.cedar"
    f.write_text(_read_text("permissive")[0])
    ap = AccessPolicy(f)
    alice = Principal("k1", "alice", ("smollm2",), ())
    first = ap.authorize(alice, "chat", SMOL)
    assert first.allowed and ap.authorize(alice, "chat", SMOL) is first  # served from the cache
    f.write_text(
        f.read_text() + '\n@id("no-chat")\nforbid (principal, action == Bastion::Action::"chat", resource);\n'
    )
    assert ap.authorize(alice, "chat", SMOL).allowed  # not yet reloaded
    ap.reload()
    d = ap.authorize(alice, "chat", SMOL)
    assert not d.allowed and [r.id for r in d.reasons] == ["no-chat"]


def test_bad_reload_keeps_the_old_policy(tmp_path: Path) -> None:
    f = tmp_path / "p.cedar"
    f.write_text(_read_text("permissive")[0])
    ap = AccessPolicy(f)
    alice = Principal("k1", "alice", ("smollm2",), ())
    f.write_text("permit (principal, action, resource) when { resource.nope };\n")
    with pytest.raises(UsageError, match=r"p\.cedar:1"):
        ap.reload()
    assert ap.authorize(alice, "chat", SMOL).allowed


def test_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="action"):
        AccessPolicy("permissive").authorize(Principal("k", "n", ("*",)), "train", SMOL)


def test_cedar_authorizer_fits_the_gateway_seam_and_cites_the_statement() -> None:
    from bastion.errors import PermissionDenied
    from bastion.policy import CedarAuthorizer
    from bastion.serve.auth import Authorizer

    authorizer: Authorizer = CedarAuthorizer(AccessPolicy("sovereign-strict", {"analysts": 2}))
    analyst = Principal("k2", "bob", ("*",), ("analysts",))
    intern = Principal("k4", "dan", ("*",), ())
    authorizer.authorize(analyst, "chat", SECRET_MODEL)
    authorizer.authorize(intern, "chat", SMOL)
    with pytest.raises(PermissionDenied, match=r"access\.clearance-below-ceiling \(line \d+\)"):
        authorizer.authorize(intern, "chat", SECRET_MODEL)
    with pytest.raises(PermissionDenied, match="no permit statement matched"):
        authorizer.authorize(Principal("k5", "eve", ("smollm2",), ()), "embedding", ModelResource("gemma3"))


def test_visible_lists_what_cedar_permits_not_the_key_model_list() -> None:
    from bastion.policy import CedarAuthorizer

    authorizer = CedarAuthorizer(AccessPolicy("sovereign-strict", {"analysts": 2}))
    models = [SMOL, SECRET_MODEL, ModelResource("gemma3")]
    # The key lists every model ("*"), but Cedar forbids the secret one to an uncleared key.
    assert authorizer.visible(Principal("k4", "dan", ("*",), ()), models) == ["smollm2", "gemma3"]
    assert authorizer.visible(Principal("k2", "bob", ("*",), ("analysts",)), models) == [
        "smollm2",
        "analyst-model",
        "gemma3",
    ]
