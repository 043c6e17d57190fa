from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.errors import AuthenticationFailed, NotFound, UsageError
from bastion.keys import KeyStore


def test_created_key_authenticates_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "b.db")
    new = store.create("alice", ["smollm2"], ["analysts"])
    principal = store.authenticate(new.key)
    assert principal.key_id == new.record.id
    assert principal.models == ("smollm2",)
    assert principal.groups == ("analysts",)
    raw = sqlite3.connect(tmp_path / "b.db").execute("SELECT * FROM api_keys").fetchall()
    assert new.key.split("_", 2)[2] not in repr(raw)


@pytest.mark.parametrize("presented", [None, "", "nonsense", "bst_abc", "bst_000000000000_secret"])
def test_missing_malformed_or_unknown_key_is_refused(tmp_path: Path, presented: str | None) -> None:
    store = KeyStore(tmp_path / "b.db")
    store.create("alice", ["*"])
    with pytest.raises(AuthenticationFailed):
        store.authenticate(presented)


def test_wrong_secret_for_a_real_id_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "b.db")
    new = store.create("alice", ["*"])
    with pytest.raises(AuthenticationFailed):
        store.authenticate(f"bst_{new.record.id}_{'x' * 43}")


def test_revocation_from_another_connection_takes_effect_without_restart(tmp_path: Path) -> None:
    gateway = KeyStore(tmp_path / "b.db")
    new = gateway.create("alice", ["*"])
    gateway.authenticate(new.key)
    KeyStore(tmp_path / "b.db").revoke(new.record.id)  # the CLI, in another process or connection
    with pytest.raises(AuthenticationFailed):
        gateway.authenticate(new.key)
    assert [k.id for k in gateway.list(include_revoked=True)] == [new.record.id]
    assert gateway.list() == []


def test_revoking_twice_or_unknown_id_is_a_clear_error(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "b.db")
    new = store.create("alice", ["*"])
    store.revoke(new.record.id)
    with pytest.raises(UsageError, match="already revoked"):
        store.revoke(new.record.id)
    with pytest.raises(NotFound):
        store.revoke("feedfeedfeed")


def test_key_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one model"):
        KeyStore(tmp_path / "b.db").create("alice", [])
