"""Red team 2: anyone who can connect to PostgreSQL holds the audit leadership's advisory lock.

The leadership is ``pg_try_advisory_lock`` on a key derived from the schema and a fixed name, and
advisory locks need no privilege: any role that can connect can take it and sit on it. Then no replica
leads and nothing is signed. That cannot be prevented from inside the database, but it must not be
silent: ``bastion audit status`` (``DbStore.leader``) named the leader from ``pg_stat_activity`` by
application name alone, so it reported "none" while a stranger held the lock, or whatever name the
stranger's session when it was named like a replica and had connected first, while a replica really
led. Fix: the holder is found in ``pg_locks`` (the session really holding the key), and one not named
as a Bastion leader is reported as a session outside Bastion, with its server pid. What remains: a
stranger that both holds the lock and names itself like a replica is reported under that name (an
application name is whatever the client says); its pid@host names no running replica.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import psycopg
import pytest

from bastion.audit import AuditLog, create_keys, open_store
from bastion.audit.db_store import LEADER_LOCK
from tests import pg_server
from tests.audit.conftest import Keys, make_record
from tests.conftest import postgres_target


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(create_keys(tmp_path / "keys" / "signing.key", tmp_path / "keys" / "body.key"))


def _key(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"bastion:{schema}:{LEADER_LOCK}".encode()).digest()[:8], "big") >> 1


def test_the_leader_named_is_the_session_holding_the_lock(postgres: pg_server.Server, keys: Keys) -> None:
    target = postgres_target(postgres)
    store = open_store(target)
    schema = str(store._conn.execute("SELECT current_schema()").fetchone()[0])  # noqa: SLF001
    me = f"{os.getpid()}@{socket.gethostname()}"
    with psycopg.connect(target.url, autocommit=True) as stranger:
        # Named like a replica (and connected first), holding nothing: it was reported as the leader.
        stranger.execute(f"SET application_name = 'bastion {LEADER_LOCK} {schema} 1@replica-9'")
        log = AuditLog(open_store(target), signer=keys.signer)
        log.append(make_record(0))
        assert log.sign_now() is not None and log.is_leader
        holder = store.leader()
        assert holder is not None and me.startswith(holder), holder
        log.close()

        # Holding the lock under another name: no replica can lead, and status said nobody did.
        stranger.execute("SET application_name = 'psql'")
        assert stranger.execute("SELECT pg_try_advisory_lock(%s)", (_key(schema),)).fetchone() == (True,)
        log = AuditLog(open_store(target), signer=keys.signer)
        log.append(make_record(1))
        log.flush()
        assert not log.is_leader
        holder = store.leader()
        assert holder is not None and "outside Bastion" in holder and "'psql'" in holder, holder
        log.close(timeout_s=0)
    assert store.leader() is None
    store.close()
