"""Several AuditLog writers on one log in one process: one leader, heads on request, takeover, the
migration of a log written before the sequence counter existed, and verify's view of the tail."""

from __future__ import annotations

import hashlib
import time

import pytest

from bastion.audit import AuditLog, open_store
from bastion.audit.db_store import MIGRATIONS
from bastion.audit.merkle import LEAF_PREFIX, Frontier
from bastion.audit.records import encode_leaf
from bastion.audit.verify import verify_log
from bastion.errors import IntegrityError
from bastion.store import Migrations, Target, open_database
from tests.conftest import raw_sql

from .conftest import Keys, make_record


def leader_of(*logs: AuditLog) -> list[bool]:
    return [log.is_leader for log in logs]


def test_exactly_one_of_several_logs_leads_and_the_others_get_its_heads(store_target: Target, keys: Keys) -> None:
    logs = [AuditLog(open_store(store_target), signer=keys.signer, sth_interval_s=3600) for _ in range(3)]
    for i, log in enumerate(logs):
        log.append(make_record(i))
    deadline = time.monotonic() + 10
    while sum(leader_of(*logs)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(leader_of(*logs)) == 1
    follower = next(log for log in logs if not log.is_leader)
    follower.append(make_record(10))
    # The follower cannot sign (the leader holds the lock), so it asks and gets the leader's head.
    head = follower.sign_now()
    assert head is not None and head.tree_size == 4
    assert not follower.is_leader
    leader = next(log for log in logs if log.is_leader)
    leader.append(make_record(11))
    assert leader.close() is not None
    # The leader stepped down: one of the others takes over (the caller itself, or the third log at its
    # next campaign) and signs a head over everything.
    head = follower.sign_now()
    assert head is not None and head.tree_size == 5
    assert sum(leader_of(*(log for log in logs if log is not leader))) == 1
    for log in logs:
        log.close()
    report = verify_log(open_store(store_target), keys.public)
    assert report.ok and report.entries == 5 and report.signed_size == 5


def test_a_log_without_its_signing_key_never_leads(store_target: Target, keys: Keys) -> None:
    reader = AuditLog(open_store(store_target), signer=None, sth_interval_s=0.1)
    reader.append(make_record(0))
    time.sleep(0.3)
    assert not reader.is_leader
    assert reader.close() is None
    signer = AuditLog(open_store(store_target), signer=keys.signer)
    head = signer.close()
    assert head is not None and head.tree_size == 1


def test_verify_checks_and_reports_the_sequenced_tail_before_it_is_integrated(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    log.append(make_record(0))
    log.close()
    follower = AuditLog(open_store(store_target), signer=None)  # sequences, never integrates
    for i in range(1, 4):
        follower.append(make_record(i))
    follower.close()
    store = open_store(store_target)
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert (report.entries, report.integrated, report.signed_size) == (4, 1, 1)
    assert any("3 newest entries are not yet covered" in n and "3 not yet integrated" in n for n in report.notes)
    # Old enough, the same tail means nobody signs: a problem, not a note.
    stale = verify_log(store, keys.public, stale_after_s=60, now=time.time() + 3600)
    assert [p.kind for p in stale.problems] == ["stale"] and stale.problems[0].entry == 1
    # An edited row in that tail is named like any other.
    raw_sql(store_target, "UPDATE audit_entries SET principal = ? WHERE seq = 2", ("key_other",))
    edited = verify_log(store, keys.public)
    assert [(p.kind, p.entry) for p in edited.problems] == [("index", 2)]


def _old_log(target: Target, keys: Keys, n: int) -> None:
    """A log as Bastion wrote it before the sequence counter: m001 only, size and frontier kept by
    each writer, a head over everything."""
    old = Migrations("audit")
    old.steps = MIGRATIONS.steps[:1]
    conn = open_database(target, old)
    frontier = Frontier()
    from hashlib import sha256

    from bastion.audit.heads import SignedTreeHead

    with conn.transaction():
        conn.execute("INSERT INTO audit_meta (key, value) VALUES ('log_id', 'old')")
        for seq in range(n):
            rec = make_record(seq)
            leaf = encode_leaf(seq, rec, "hashes")
            digest = sha256(LEAF_PREFIX + leaf).digest()
            frontier.append(digest)
            conn.execute(
                "INSERT INTO audit_entries (seq, kind, time, request_id, principal, model, leaf, leaf_hash)"
                " VALUES (?, 'request', ?, ?, ?, ?, ?, ?)",
                (seq, rec.time, rec.request_id, rec.principal, rec.model, leaf, digest),
            )
        conn.execute("UPDATE audit_tree SET size = ?, frontier = ?", (frontier.size, frontier.to_bytes()))
        head = SignedTreeHead.sign(keys.signer, "bastion-audit/old", n, frontier.root(), 1_767_225_600_000)
        conn.execute(
            "INSERT INTO audit_heads (origin, tree_size, root, timestamp_ms, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)",
            (head.origin, head.tree_size, head.root, head.timestamp_ms, head.key_id, head.signature),
        )
    conn.close()


def test_a_log_from_before_the_counter_is_upgraded_in_place_and_continues(store_target: Target, keys: Keys) -> None:
    _old_log(store_target, keys, 7)
    log = AuditLog(open_store(store_target), signer=keys.signer)  # applies m002
    ref = log.append(make_record(7))
    head = log.close()
    assert ref.seq == 7 and head is not None and head.tree_size == 8
    applied = raw_sql(store_target, "SELECT name FROM _migrations WHERE component = 'audit' ORDER BY name")
    assert [r[0] for r in applied] == ["m001_create_audit_tables", "m002_sequence_and_leader"]
    report = verify_log(open_store(store_target), keys.public)
    assert report.ok and report.entries == 8 and report.heads == 2


def test_a_process_with_another_signing_key_steps_down_and_never_signs(store_target: Target, keys: Keys) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signed = AuditLog(open_store(store_target), signer=keys.signer)
    signed.append(make_record(0))
    signed.close()
    stranger = AuditLog(open_store(store_target), signer=Ed25519PrivateKey.generate())
    stranger.append(make_record(1))
    with pytest.raises(IntegrityError, match="signing key .* is not the log's"):
        stranger.sign_now(timeout_s=0.5)
    assert stranger.close(timeout_s=0.5) is None  # it took the lock, saw another key, stepped down
    assert not stranger.is_leader
    report = verify_log(open_store(store_target), keys.public)
    assert report.ok and report.heads == 1 and report.entries == 2  # nothing signed with the wrong key
    head = AuditLog(open_store(store_target), signer=keys.signer).close()
    assert head is not None and head.tree_size == 2


def test_a_leader_whose_postgres_session_was_cut_cannot_sign_and_another_takes_over(
    postgres: object, keys: Keys
) -> None:
    from tests.conftest import postgres_target

    target = postgres_target(postgres)  # type: ignore[arg-type]
    first = AuditLog(open_store(target), signer=keys.signer, sth_interval_s=3600)
    first.append(make_record(0))
    assert first.sign_now() is not None and first.is_leader
    second = AuditLog(open_store(target), signer=keys.signer, sth_interval_s=3600)
    # The server ends the leader's session (a network cut, an administrator): its lock goes with it.
    schema = raw_sql(target, "SELECT current_schema()")[0][0]
    key = int.from_bytes(hashlib.sha256(f"bastion:{schema}:audit-leader".encode()).digest()[:8], "big") >> 1
    ended = raw_sql(
        target,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = ? AND objid = ? AND objsubid = 1",
        (key >> 32, key & 0xFFFFFFFF),
    )
    assert ended == [(True,)]
    second.append(make_record(1))
    head = second.sign_now()
    assert head is not None and head.tree_size == 2
    # The old leader believes it leads until it tries to write through its dead session: then it steps
    # down (and campaigns again on a new session). Whoever leads now, there is one, and heads go on.
    first.append(make_record(2))
    head = first.sign_now()
    assert head is not None and head.tree_size == 3
    assert first.is_leader + second.is_leader == 1
    first.close()
    second.close()
    report = verify_log(open_store(target), keys.public)
    assert report.ok and report.signed_size == 3


def test_the_store_names_the_leader_while_it_leads(store_target: Target, keys: Keys) -> None:
    import os
    import socket

    store = open_store(store_target)
    assert store.leader() is None
    log = AuditLog(open_store(store_target), signer=keys.signer)
    log.append(make_record(0))
    log.sign_now()
    holder = store.leader()  # pid@host (PostgreSQL may cut a long host name at 63 bytes)
    assert log.is_leader and holder and f"{os.getpid()}@{socket.gethostname()}".startswith(holder)
    log.close()
    assert store.leader() is None
    store.close()
