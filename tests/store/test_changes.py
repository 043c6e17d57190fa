"""Change counters: a cache reloads when its table changes, from any connection, and not otherwise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.errors import AuthenticationFailed
from bastion.keys import KeyStore
from bastion.quota.store import UsageStore
from bastion.registry import Registry
from bastion.store import (
    ChangeWatch,
    Connection,
    Migrations,
    PostgresTarget,
    Target,
    count_changes,
    open_database,
)
from bastion.withdrawal import WithdrawalStore
from tests.conftest import raw_sql

migrations = Migrations("test-changes")


@migrations
def m001_items(conn: Connection) -> None:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT, seen_at TEXT)")
    count_changes(conn, "items", ("id", "value"))


def _open(path: Target) -> Connection:
    return open_database(path, migrations)


def test_a_write_to_another_table_is_not_a_change(store_target: Target) -> None:
    conn, other = _open(store_target), _open(store_target)
    watch = ChangeWatch(conn, "items")
    assert watch.changed()  # the first call: nothing seen yet
    assert not watch.changed()
    with other.transaction():
        other.execute("CREATE TABLE IF NOT EXISTS unrelated (x INTEGER)")
        other.execute("INSERT INTO unrelated VALUES (1)")
    assert not watch.changed()


def test_insert_update_of_a_watched_column_and_delete_are_changes_from_any_connection(
    store_target: Target,
) -> None:
    conn = _open(store_target)
    watch = ChangeWatch(conn, "items")
    watch.changed()
    for sql in ("INSERT INTO items VALUES (1, 'a', NULL)", "UPDATE items SET value = 'b'", "DELETE FROM items"):
        raw_sql(store_target, sql)  # a plain, hand-made writer
        assert watch.changed(), sql
        assert not watch.changed(), sql


def test_an_update_of_an_unwatched_column_is_not_a_change(store_target: Target) -> None:
    conn, other = _open(store_target), _open(store_target)
    with other.transaction():
        other.execute("INSERT INTO items VALUES (1, 'a', NULL)")
    watch = ChangeWatch(conn, "items")
    watch.changed()
    with other.transaction():
        other.execute("UPDATE items SET seen_at = 'now'")
    assert not watch.changed()


def test_a_dropped_trigger_makes_every_write_a_change_again(store_target: Target) -> None:
    conn, other = _open(store_target), _open(store_target)
    watch = ChangeWatch(conn, "items")
    watch.changed()
    on = " ON items" if isinstance(store_target, PostgresTarget) else ""
    with other.transaction():
        other.execute("DROP TRIGGER items_changed_on_update" + on)
    assert watch.changed()
    with other.transaction():
        other.execute("CREATE TABLE IF NOT EXISTS unrelated (x INTEGER)")
    assert watch.changed()  # fail safe: without the trigger the counter proves nothing


def test_usage_rows_do_not_reload_keys_but_a_revocation_from_another_process_is_seen(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    keys = KeyStore(db)
    key = keys.create("client", ["*"])
    usage = UsageStore(db)
    keys.authenticate(key.key)
    reloads = 0
    original = keys._watch.changed

    def counting() -> bool:
        nonlocal reloads
        changed = original()
        reloads += changed
        return changed

    keys._watch.changed = counting  # type: ignore[method-assign]
    for _ in range(5):
        assert usage.try_record(("org",), "2026-11-01", "2026-11-30", key.record.id, "m", 1, 1)
        keys.authenticate(key.key)
    assert reloads == 0
    cli = KeyStore(db)  # 'bastion keys revoke' in another process
    cli.revoke(key.record.id)
    cli.close()
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(key.key)
    assert reloads == 1


def test_a_hand_edited_withdrawal_is_still_seen_at_once(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    store = WithdrawalStore(db, None)
    assert store.active() == ()
    with sqlite3.connect(db) as other:
        other.execute(
            "INSERT INTO withdrawals (kind, target, reason, actor, created_at, signature)"
            " VALUES ('model', 'm', 'letter', 'me', '2026-11-30T00:00:00+00:00', 'x')"
        )
    assert [w.target for w in store.active()] == ["m"]


def _admit(registry: Registry, name: str, digest: str) -> int:
    return registry.record(
        name=name, path="/m.gguf", weights_digest=digest, root_digest="sha256:root-" + name, signature=b"s",
        signer="t", verdict="pass", findings=[], bom={}, identity={}, decision={}, policy="p", admitted_by="t",
    ).id


def test_usage_rows_do_not_reload_the_registry_nor_read_the_audit_log_but_a_revocation_is_seen(
    tmp_path: Path,
) -> None:
    db = tmp_path / "b.db"
    witnessed = 0

    def witness() -> set[str]:  # stands for reading the audit log: costly, once per registry change
        nonlocal witnessed
        witnessed += 1
        return set()

    writer = Registry(db)
    admission = _admit(writer, "smol", "sha256:w")
    gateway = Registry(db, witness=witness)
    assert gateway.still_admitted(admission, "sha256:w")
    usage = UsageStore(db)
    before = witnessed
    for _ in range(5):
        assert usage.try_record(("org",), "2026-11-01", "2026-11-30", "k", "smol", 1, 1)
        assert gateway.still_admitted(admission, "sha256:w")
    assert witnessed == before
    writer.revoke("smol", "t", "withdrawn by letter")
    assert not gateway.still_admitted(admission, "sha256:w")
    assert witnessed == before + 1
