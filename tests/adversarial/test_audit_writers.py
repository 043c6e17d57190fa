"""Attacks on the multi-writer audit log by someone who can write its database (not the signing key).

Writers reserve leaf indices from a counter in the database and one elected leader signs. A database
writer can insert a row at an index nobody reserved (ahead of the counter), delete a sequenced row
before the leader integrates it, or move the counter back or forward. None of it may end in a duplicate
index, a silent gap, or a head signed over a row that does not belong: the leader stops at the bad row,
writers refuse to overwrite, and ``verify`` names the row. Both backends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import AuditLog, create_keys, open_store
from bastion.audit.merkle import leaf_hash
from bastion.audit.records import encode_leaf
from bastion.audit.verify import verify_log
from bastion.errors import IntegrityError
from bastion.store import Target
from tests.audit.conftest import Keys, make_record
from tests.conftest import raw_sql


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(create_keys(tmp_path / "keys" / "signing.key", tmp_path / "keys" / "body.key"))


def forge_row(target: Target, seq: int) -> None:
    """A row that passes every per-row check: right seq in the leaf, right hash, right columns."""
    rec = make_record(90_000 + seq, principal="key_mallory")
    leaf = encode_leaf(seq, rec, "hashes")
    raw_sql(
        target,
        "INSERT INTO audit_entries (seq, kind, time, request_id, principal, model, leaf, leaf_hash)"
        " VALUES (?, 'request', ?, ?, ?, ?, ?, ?)",
        (seq, rec.time, rec.request_id, rec.principal, rec.model, leaf, leaf_hash(leaf)),
    )


def signed_log(target: Target, keys: Keys, n: int) -> None:
    log = AuditLog(open_store(target), signer=keys.signer)
    for i in range(n):
        log.append(make_record(i))
    log.close()


def test_a_row_inserted_ahead_of_the_counter_is_named_and_never_overwritten_or_signed(
    store_target: Target, keys: Keys
) -> None:
    signed_log(store_target, keys, 5)
    forge_row(store_target, 7)  # two ahead of the next index a writer would get
    report = verify_log(open_store(store_target), keys.public)
    assert not report.ok and report.first_bad_entry == 5
    assert {p.kind for p in report.problems} == {"missing", "extra"}

    log = AuditLog(open_store(store_target), signer=keys.signer)
    assert [log.append(make_record(i)).seq for i in (5, 6)] == [5, 6]
    with pytest.raises(IntegrityError, match="already exists"):
        log.append(make_record(7))  # the writer refuses to take index 7: no duplicate, no overwrite
    head = log.sign_now()
    assert head is not None and head.tree_size == 7  # the leader signs up to the counter, not the row
    log.close()
    report = verify_log(open_store(store_target), keys.public)
    assert [(p.kind, p.entry) for p in report.problems] == [("extra", 7)]
    assert raw_sql(store_target, "SELECT principal FROM audit_entries WHERE seq = 7")[0][0] == "key_mallory"


def test_a_sequenced_row_deleted_before_integration_stops_the_leader_and_is_named(
    store_target: Target, keys: Keys
) -> None:
    signed_log(store_target, keys, 3)
    follower = AuditLog(open_store(store_target), signer=None)  # sequences only
    for i in range(3, 6):
        follower.append(make_record(i))
    follower.close()
    raw_sql(store_target, "DELETE FROM audit_entries WHERE seq = 4")
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    with pytest.raises(IntegrityError, match="entry 4 is missing"):
        leader.sign_now()
    leader.close(timeout_s=0)
    store = open_store(store_target)
    assert max(h.tree_size for h in store.heads()) == 4  # nothing signed over the gap
    report = verify_log(store, keys.public)
    assert report.first_bad_entry == 4 and "missing" in {p.kind for p in report.problems}


def test_a_tail_row_edited_before_integration_is_not_signed(store_target: Target, keys: Keys) -> None:
    signed_log(store_target, keys, 2)
    follower = AuditLog(open_store(store_target), signer=None)
    follower.append(make_record(2))
    follower.close()
    leaf = raw_sql(store_target, "SELECT leaf FROM audit_entries WHERE seq = 2")[0][0]
    raw_sql(store_target, "UPDATE audit_entries SET leaf = ? WHERE seq = 2", (bytes(leaf).replace(b"allow", b"ALLOW"),))
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    with pytest.raises(IntegrityError, match="entry 2: leaf does not match"):
        leader.sign_now()
    leader.close(timeout_s=0)
    report = verify_log(open_store(store_target), keys.public)
    assert [(p.kind, p.entry) for p in report.problems] == [("edited", 2)]


def test_moving_the_counter_back_gives_no_duplicate_index(store_target: Target, keys: Keys) -> None:
    signed_log(store_target, keys, 4)
    raw_sql(store_target, "UPDATE audit_sequence SET next = next - 2")
    log = AuditLog(open_store(store_target), signer=keys.signer)
    with pytest.raises(IntegrityError, match="already exists"):
        log.append(make_record(9))
    log.close(timeout_s=0)
    assert raw_sql(store_target, "SELECT count(*), count(DISTINCT seq) FROM audit_entries")[0] == (4, 4)
    report = verify_log(open_store(store_target), keys.public)
    # Rows 2 and 3 are beyond the counter, and the leader's tree claims more than the counter gave out.
    assert [(p.kind, p.entry) for p in report.problems] == [("extra", 2), ("integrated", 2)]


def test_moving_the_counter_forward_leaves_a_gap_that_is_never_signed(store_target: Target, keys: Keys) -> None:
    signed_log(store_target, keys, 4)
    raw_sql(store_target, "UPDATE audit_sequence SET next = next + 3")
    log = AuditLog(open_store(store_target), signer=keys.signer)
    assert log.append(make_record(4)).seq == 7
    with pytest.raises(IntegrityError, match="entry 4 is missing"):
        log.sign_now()
    log.close(timeout_s=0)
    store = open_store(store_target)
    assert max(h.tree_size for h in store.heads()) == 4
    report = verify_log(store, keys.public)
    assert report.first_bad_entry == 4 and report.problems[0].kind == "missing"
