from __future__ import annotations

import pytest

from bastion.errors import AuthenticationFailed, NotFound, UsageError
from bastion.keys import KeyStore
from bastion.store import Target
from tests.conftest import raw_sql


def test_created_key_authenticates_and_only_its_hash_is_stored(store_target: Target) -> None:
    store = KeyStore(store_target)
    new = store.create("alice", ["smollm2"], ["analysts"])
    principal = store.authenticate(new.key)
    assert principal.key_id == new.record.id
    assert principal.models == ("smollm2",)
    assert principal.groups == ("analysts",)
    raw = raw_sql(store_target, "SELECT * FROM api_keys")
    assert new.key.split("_", 2)[2] not in repr(raw)


@pytest.mark.parametrize("presented", [None, "", "nonsense", "bst_abc", "bst_000000000000_secret"])
def test_missing_malformed_or_unknown_key_is_refused(store_target: Target, presented: str | None) -> None:
    store = KeyStore(store_target)
    store.create("alice", ["*"])
    with pytest.raises(AuthenticationFailed):
        store.authenticate(presented)


def test_wrong_secret_for_a_real_id_is_refused(store_target: Target) -> None:
    store = KeyStore(store_target)
    new = store.create("alice", ["*"])
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"bst_{new.record.id}_{'x' * 43}")


def test_revocation_from_another_connection_takes_effect_without_restart(store_target: Target) -> None:
    gateway = KeyStore(store_target)
    new = gateway.create("alice", ["*"])
    gateway.authenticate(new.key)
    KeyStore(store_target).revoke(new.record.id)  # the CLI, in another process or connection
    with pytest.raises(AuthenticationFailed):
        gateway.authenticate(new.key)
    assert [k.id for k in gateway.list(include_revoked=True)] == [new.record.id]
    assert gateway.list() == []


def test_revoking_twice_or_unknown_id_is_a_clear_error(store_target: Target) -> None:
    store = KeyStore(store_target)
    new = store.create("alice", ["*"])
    store.revoke(new.record.id)
    with pytest.raises(UsageError, match="already revoked"):
        store.revoke(new.record.id)
    with pytest.raises(NotFound):
        store.revoke("feedfeedfeed")


def test_key_needs_a_model(store_target: Target) -> None:
    with pytest.raises(UsageError, match="at least one model"):
        KeyStore(store_target).create("alice", [])


def test_an_expired_key_is_refused_with_its_expiry(store_target: Target) -> None:
    from datetime import UTC, datetime, timedelta


    store = KeyStore(store_target)
    past = store.create("temp", ["*"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    future = store.create("temp", ["*"], expires_at=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(AuthenticationFailed, match="expired at"):
        store.authenticate(past.key)
    assert store.authenticate(future.key).name == "temp"


def test_rotation_keeps_the_old_key_for_the_overlap_only(store_target: Target) -> None:
    from datetime import timedelta


    store = KeyStore(store_target)
    old = store.create("svc", ["smollm2"], ["analysts"])
    new, old_rec = store.rotate(old.record.id, timedelta(hours=1))
    assert new.record.rotated_from == old.record.id and new.record.groups == ("analysts",)
    assert store.authenticate(old.key).key_id == old.record.id  # still inside the overlap
    assert store.authenticate(new.key).models == ("smollm2",)
    assert old_rec.expires_at is not None
    store.rotate(new.record.id, timedelta(0))  # no overlap: the rotated key stops at once
    with pytest.raises(AuthenticationFailed, match="expired"):
        store.authenticate(new.key)


def test_last_used_is_recorded_without_a_write_per_request(store_target: Target) -> None:
    store = KeyStore(store_target)
    key = store.create("busy", ["*"])
    for _ in range(100):
        store.authenticate(key.key)
    other = KeyStore(store_target)
    assert other.get(key.record.id).last_used_at is None  # not flushed yet
    store.close()  # closing flushes
    assert other.get(key.record.id).last_used_at is not None
    other.close()
