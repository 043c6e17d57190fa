"""LISTEN/NOTIFY (PostgreSQL): a change is heard at once, nothing is asked while nothing changed, and a
lost listening connection falls back to reading the counters on every check until it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from bastion.keys import KeyStore
from bastion.keys.store import migrations as key_migrations
from bastion.store import (
    ChangeWatch,
    Connection,
    Listener,
    Migrations,
    PostgresTarget,
    close_pools,
    count_changes,
    listen,
    notify_changes,
    open_database,
)
from bastion.store.notify import CHANNEL, RELOAD_CHANNEL
from tests import pg_server
from tests.conftest import postgres_target, raw_sql

migrations = Migrations("test-notify")


@migrations
def m001_items(conn: Connection) -> None:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT)")
    count_changes(conn, "items")


@migrations
def m002_notify(conn: Connection) -> None:
    notify_changes(conn, "items")


#: the trigger function as it was before notify_changes: counts, notifies nothing
SILENT = (
    "CREATE OR REPLACE FUNCTION items_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE change_counters SET generation = generation + 1 WHERE name = 'items'; RETURN NULL; END $$"
)


@pytest.fixture
def target(postgres: pg_server.Server) -> Iterator[PostgresTarget]:
    made = postgres_target(postgres)
    open_database(made, migrations).close()
    yield made
    close_pools(made.url)


def listening(target: PostgresTarget, recheck_s: float = 1.0) -> Listener:
    listener = listen(target, recheck_s=recheck_s)
    assert listener.connected.wait(10), "the listener did not connect"
    return listener


def until(condition: Callable[[], bool], within: float) -> float | None:
    """Seconds until ``condition()`` held, polling every 5 ms; None if it did not within ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if condition():
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def listener_backend(target: PostgresTarget, listener: Listener) -> int:
    rows = raw_sql(target, "SELECT pid FROM pg_stat_activity WHERE application_name = ?",
                   (listener.application_name,))
    assert len(rows) == 1, rows
    return int(rows[0][0])


def test_a_commit_from_any_connection_is_heard_within_a_second(target: PostgresTarget) -> None:
    listener = listening(target)
    try:
        watch = ChangeWatch(open_database(target, migrations), "items")
        assert watch.changed()
        assert not watch.changed()
        raw_sql(target, "INSERT INTO items VALUES (1, 'a')")  # a plain, hand-made writer
        took = until(watch.changed, 1.0)
        assert took is not None, "not heard within a second"
        print(f"change heard after {took * 1000:.1f} ms")
        assert not watch.changed()
    finally:
        listener.release()


def test_while_listening_an_unchanged_table_costs_no_query(target: PostgresTarget) -> None:
    # A trigger function that counts but does not notify: a watch that reads the counters sees the
    # change at once; one that answers from memory (no query) does not, until its recheck.
    listener = listening(target, recheck_s=3600)
    try:
        watch = ChangeWatch(open_database(target, migrations), "items")
        watch.changed()
        raw_sql(target, SILENT)
        raw_sql(target, "INSERT INTO items VALUES (1, 'a')")
        assert not watch.changed()  # answered from memory: nothing was notified
        watch.reset()
        assert watch.changed()  # the counter did move: a read sees it
    finally:
        listener.release()


def test_a_lost_notification_is_seen_at_the_next_recheck(target: PostgresTarget) -> None:
    listener = listening(target, recheck_s=0.5)
    try:
        watch = ChangeWatch(open_database(target, migrations), "items")
        watch.changed()
        raw_sql(target, SILENT)  # e.g. someone replaced the trigger function without its NOTIFY
        raw_sql(target, "INSERT INTO items VALUES (1, 'a')")
        took = until(watch.changed, 1.0)
        assert took is not None and took < 1.0
    finally:
        listener.release()


def test_with_the_listener_down_every_check_reads_the_counters(target: PostgresTarget) -> None:
    listener = listening(target, recheck_s=3600)
    try:
        watch = ChangeWatch(open_database(target, migrations), "items")
        watch.changed()
        listener.stop()  # its connection is gone and does not come back; still this process's listener
        assert listener.mark(("items",)) is None
        raw_sql(target, SILENT)  # and nothing notifies: only a read of the counters can tell
        raw_sql(target, "INSERT INTO items VALUES (1, 'a')")
        assert watch.changed()  # at once: no recheck interval, no notification
        assert not watch.changed()
    finally:
        listener.release()


def test_a_killed_listener_reconnects_and_a_change_made_meanwhile_is_seen(target: PostgresTarget) -> None:
    listener = listening(target, recheck_s=3600)  # no periodic recheck: only the reconnection can tell
    try:
        watch = ChangeWatch(open_database(target, migrations), "items")
        watch.changed()
        raw_sql(target, SILENT)  # nothing notifies the change below, whenever it lands
        backend = listener_backend(target, listener)
        raw_sql(target, "SELECT pg_terminate_backend(?)", (backend,))
        raw_sql(target, "INSERT INTO items VALUES (1, 'a')")  # while it is down (or reconnecting)
        assert until(lambda: listener.connections >= 2, 10) is not None, "it did not reconnect"
        assert listener_backend(target, listener) != backend
        assert watch.changed()  # the counters were read once after reconnecting
        assert not watch.changed()  # and from memory again after that
    finally:
        listener.release()


def test_a_revoked_key_is_refused_after_the_listener_was_killed(target: PostgresTarget) -> None:
    listener = listening(target)
    try:
        keys, cli = KeyStore(target), KeyStore(target)
        made = cli.create("alice", ["*"])
        assert keys.authenticate(made.key).name == "alice"
        raw_sql(target, "SELECT pg_terminate_backend(?)", (listener_backend(target, listener),))
        cli.revoke(made.record.id)
        refused = until(lambda: _refused(keys, made.key), 1.0)
        assert refused is not None, "a revoked key was still accepted a second later"
        assert until(lambda: listener.connected.is_set() and listener.connections >= 2, 10) is not None
        again = cli.create("bob", ["*"])
        cli.revoke(again.record.id)
        assert until(lambda: _refused(keys, again.key), 1.0) is not None
    finally:
        listener.release()


def _refused(keys: KeyStore, key: str) -> bool:
    try:
        keys.authenticate(key)
    except Exception:  # noqa: BLE001 - AuthenticationFailed is what we wait for; anything else fails below
        return True
    return False


def test_a_database_made_before_notify_is_upgraded(postgres: pg_server.Server) -> None:
    target = postgres_target(postgres)
    older = Migrations("keys")
    older.steps = [s for s in key_migrations.steps if s[0] != "m004_notify_changes"]
    open_database(target, older).close()
    function = ("SELECT prosrc FROM pg_proc WHERE proname = 'api_keys_changed'"
                " AND pronamespace = current_schema()::regnamespace")
    assert "pg_notify" not in raw_sql(target, function)[0][0]
    KeyStore(target).close()  # opening with this Bastion applies the missing step
    assert "pg_notify" in raw_sql(target, function)[0][0]
    with psycopg.connect(target.url, autocommit=True) as conn_raw:
        conn_raw.execute(f"LISTEN {CHANNEL}")
        KeyStore(target).create("carol", ["*"])
        heard = next(conn_raw.notifies(timeout=5, stop_after=1))
    schema = raw_sql(target, "SELECT current_schema()")[0][0]
    assert heard.payload == f"{schema}.api_keys"
    close_pools(target.url)


# -- reloads ------------------------------------------------------------------------------------------


def test_a_reload_announced_by_one_process_reaches_the_other_and_not_itself(target: PostgresTarget) -> None:
    KeyStore(target).close()  # the counters table, as every gateway's key store makes it
    here = listening(target)
    there = Listener(target)  # another gateway (a second listener, as another process has)
    heard_here, heard_there = threading.Event(), threading.Event()
    count = [0]
    here.on_reload.append(heard_here.set)
    there.on_reload.append(lambda: (heard_there.set(), count.__setitem__(0, count[0] + 1)))
    there.start()
    try:
        assert there.connected.wait(10)
        # Forged: a NOTIFY without the counter moving (any role that can connect may NOTIFY).
        schema = raw_sql(target, "SELECT current_schema()")[0][0]
        raw_sql(target, f"SELECT pg_notify('{RELOAD_CHANNEL}', ?)", (schema,))
        start = time.monotonic()
        assert here.announce_reload()
        assert heard_there.wait(1.0), "the other gateway did not hear the reload within a second"
        print(f"reload heard after {(time.monotonic() - start) * 1000:.1f} ms")
        assert count[0] == 1  # the forged notification (delivered first) reloaded nothing
        assert not heard_here.wait(0.3)  # the announcing process reloads on its own, once
        # Announced while the other's connection is down: carried out once it is back.
        raw_sql(target, "SELECT pg_terminate_backend(?)", (listener_backend(target, there),))
        assert here.announce_reload()
        assert until(lambda: count[0] == 2, 10) is not None
    finally:
        there.stop()
        here.release()
