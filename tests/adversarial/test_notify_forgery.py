"""Attacks on LISTEN/NOTIFY by a role that can merely connect to the database (issue 13).

Any role that can connect may NOTIFY on any channel and LISTEN to any channel: PostgreSQL has no
privilege for either. So notifications must never carry state. A gateway treats one on
``bastion_changes`` as "read the change counters now" (the counters are kept by triggers, which such a
role cannot fire without write access), and one on ``bastion_reload`` as "look at the reload counter".
What a forger gets: a counter read per request (today's per-request cost without LISTEN), never a
revoked key accepted, never a reload; what a listener learns: which table changed, and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from bastion.errors import AuthenticationFailed
from bastion.keys import KeyStore
from bastion.store import Listener, PostgresTarget, close_pools, listen
from bastion.store.notify import CHANNEL, RELOAD_CHANNEL
from tests import pg_server
from tests.conftest import postgres_target, raw_sql

FORGED = ("{schema}.api_keys", "{schema}.revocations", "api_keys", "other.api_keys", "", "x" * 7000,
          "{schema}.api_keys; SELECT 1", "{schema}.")


@pytest.fixture
def target(postgres: pg_server.Server) -> Iterator[PostgresTarget]:
    made = postgres_target(postgres)
    KeyStore(made).close()
    yield made
    close_pools(made.url)


@pytest.fixture
def mallory(postgres: pg_server.Server, target: PostgresTarget) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session of a role with no privilege on any of Bastion's tables."""
    postgres.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mallory') THEN"
                     " CREATE ROLE mallory LOGIN; END IF; END $$")
    with psycopg.connect(postgres.url().replace("bastion@", "mallory@", 1), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {_schema(target)}.api_keys".encode())
        yield conn


def _schema(target: PostgresTarget) -> str:
    return str(raw_sql(target, "SELECT current_schema()")[0][0])


def _refused(keys: KeyStore, key: str) -> bool:
    try:
        keys.authenticate(key)
    except AuthenticationFailed:
        return True
    return False


def test_forged_change_notifications_never_make_a_revoked_key_valid(
    target: PostgresTarget, mallory: psycopg.Connection[tuple[object, ...]]
) -> None:
    listener = listen(target)
    assert listener.connected.wait(10)
    schema = _schema(target)
    keys, admin = KeyStore(target), KeyStore(target)
    try:
        revoked = admin.create("eve", ["*"])
        admin.revoke(revoked.record.id)
        live = admin.create("alice", ["*"])
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                for payload in FORGED:
                    mallory.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload.format(schema=schema)))

        flooding = threading.Thread(target=flood)
        flooding.start()
        try:
            for _ in range(200):
                assert _refused(keys, revoked.key)
                assert keys.authenticate(live.key).name == "alice"
            # A revocation made during the flood still takes effect at once: forgeries add reads,
            # never suppress one.
            admin.revoke(live.record.id)
            deadline = time.monotonic() + 1.0
            while not _refused(keys, live.key):
                assert time.monotonic() < deadline, "a revocation during the flood was not seen within 1 s"
                time.sleep(0.005)
        finally:
            stop.set()
            flooding.join()
    finally:
        keys.close()
        admin.close()
        listener.release()


def test_forged_reload_notifications_reload_nothing(
    target: PostgresTarget, mallory: psycopg.Connection[tuple[object, ...]]
) -> None:
    schema = _schema(target)
    gateway, other = Listener(target), listen(target)
    reloads: list[float] = []
    gateway.on_reload.append(lambda: reloads.append(time.monotonic()))
    gateway.start()
    try:
        assert gateway.connected.wait(10) and other.connected.wait(10)
        for _ in range(50):
            mallory.execute("SELECT pg_notify(%s, %s)", (RELOAD_CHANNEL, schema))
        # mallory cannot move the counter a real announcement moves
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mallory.execute(f"UPDATE {schema}.change_counters SET generation = generation + 1".encode())
        assert other.announce_reload()  # the real one, delivered after the forged ones
        deadline = time.monotonic() + 1.0
        while not reloads:
            assert time.monotonic() < deadline, "the real announcement was not heard within 1 s"
            time.sleep(0.005)
        time.sleep(0.2)
        assert len(reloads) == 1, "a forged reload notification made the gateway reload"
    finally:
        gateway.stop()
        other.release()


def test_forged_table_names_do_not_grow_the_listener(
    target: PostgresTarget, mallory: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Red team (this change): every payload naming a new table added a counter to the listener, so a
    # stranger could grow a gateway's memory without bound. Only watched tables are counted now.
    listener = listen(target)
    assert listener.connected.wait(10)
    schema = _schema(target)
    keys = KeyStore(target)
    try:
        keys.authenticate(keys.create("alice", ["*"]).key)  # the key cache registers its table
        before = listener._bumps["api_keys"]
        for i in range(5000):
            mallory.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{schema}.forged_{i}"))
        mallory.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{schema}.api_keys"))  # delivered last
        deadline = time.monotonic() + 10
        while listener._bumps["api_keys"] == before:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert set(listener._bumps) == {"api_keys"}, len(listener._bumps)
    finally:
        keys.close()
        listener.release()


def test_a_listening_stranger_learns_which_table_changed_and_nothing_else(
    target: PostgresTarget, mallory: psycopg.Connection[tuple[object, ...]]
) -> None:
    mallory.execute(f"LISTEN {CHANNEL}".encode())
    made = KeyStore(target).create("alice", ["*"])
    heard = [n.payload for n in mallory.notifies(timeout=2, stop_after=1)]
    assert heard == [f"{_schema(target)}.api_keys"]
    assert not any(made.record.id in p or made.key in p for p in heard)
