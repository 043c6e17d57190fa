"""Red team 2: a writer of the database edits the leader's tree state (``audit_tree``) or its heads.

The leader folds new leaves into the RFC 6962 frontier it stored in ``audit_tree`` and signs the result.
That frontier is in the database every replica writes: whoever can write a row can write it too. A
frontier of a different tree (same size, other leaves) made the next leader sign a head whose root no
entry of the log supports: a signed commitment to leaves of the attacker's choosing (inclusion proofs
for forged entries verify against it). ``verify`` names the forged head afterwards, but the signature
is out. Fix: the leader keeps the frontier it checked in memory; on taking the lead it rebuilds it from
the leaf hashes (checked against the newest signed head) and refuses, stalled, when the stored one
differs, and while leading it refuses when the stored one moved under it.

Heads too are rows: one head row claiming 2**40 entries under the log's key id (any signature) made the
leader take everything as signed and never sign again, silently, and ``sign_now`` handed that row out as
the head covering the log. Fix: the leader checks the newest head's signature and size before it counts
on it (stalling, loudly, when it is forged), and no process with the key hands out a head it cannot
verify.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import AuditLog, create_keys, open_store
from bastion.audit.merkle import Frontier, leaf_hash
from bastion.audit.verify import verify_log
from bastion.errors import Busy, IntegrityError
from bastion.store import Target
from tests.audit.conftest import Keys, make_record
from tests.conftest import raw_sql


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(create_keys(tmp_path / "keys" / "signing.key", tmp_path / "keys" / "body.key"))


def _forged_frontier(size: int) -> bytes:
    forged = Frontier()
    for i in range(size):
        forged.append(leaf_hash(b"mallory's leaf %d" % i))
    return forged.to_bytes()


def _signed(target: Target, keys: Keys, n: int) -> None:
    log = AuditLog(open_store(target), signer=keys.signer)
    for i in range(n):
        log.append(make_record(i))
    assert log.sign_now() is not None
    log.close()


def test_a_forged_frontier_is_never_signed_by_the_next_leader(store_target: Target, keys: Keys) -> None:
    _signed(store_target, keys, 4)
    raw_sql(store_target, "UPDATE audit_tree SET frontier = ? WHERE id = 1", (_forged_frontier(4),))
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    leader.append(make_record(4))
    with pytest.raises(IntegrityError, match="frontier"):
        leader.sign_now()
    leader.close(timeout_s=0)
    store = open_store(store_target)
    assert max(h.tree_size for h in store.heads()) == 4  # nothing signed over the forged tree
    assert verify_log(store, keys.public).problems[0].kind == "frontier"


def test_a_frontier_forged_under_a_running_leader_is_never_signed(store_target: Target, keys: Keys) -> None:
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    for i in range(3):
        leader.append(make_record(i))
    assert leader.sign_now() is not None
    raw_sql(store_target, "UPDATE audit_tree SET frontier = ? WHERE id = 1", (_forged_frontier(3),))
    leader.append(make_record(3))
    with pytest.raises(IntegrityError, match="frontier"):
        leader.sign_now()
    leader.close(timeout_s=0)
    assert max(h.tree_size for h in open_store(store_target).heads()) == 3


def test_history_rewritten_with_its_frontier_is_never_extended_by_a_signature(
    store_target: Target, keys: Keys
) -> None:
    # The whole job: entry 1 rewritten with a correct hash and columns, the frontier recomputed to match
    # the rewritten leaves. Every per-row check passes; only the signed head at size 3 disagrees.
    _signed(store_target, keys, 3)
    rows = raw_sql(store_target, "SELECT leaf FROM audit_entries ORDER BY seq")
    rewritten = bytes(rows[1][0]).replace(b'"allow"', b'"deny"')
    assert rewritten != bytes(rows[1][0])
    raw_sql(store_target, "UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE seq = 1",
            (rewritten, leaf_hash(rewritten)))
    frontier = Frontier()
    for leaf in (bytes(rows[0][0]), rewritten, bytes(rows[2][0])):
        frontier.append(leaf_hash(leaf))
    raw_sql(store_target, "UPDATE audit_tree SET frontier = ? WHERE id = 1", (frontier.to_bytes(),))
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    leader.append(make_record(3))
    with pytest.raises(IntegrityError, match="signed head"):
        leader.sign_now()
    leader.close(timeout_s=0)
    assert max(h.tree_size for h in open_store(store_target).heads()) == 3


def _forge_head(target: Target, tree_size: int) -> None:
    """A head row claiming the log's key id, with a signature nobody made."""
    origin, key = raw_sql(target, "SELECT origin, key_id FROM audit_heads ORDER BY id DESC LIMIT 1")[0]
    raw_sql(target, "INSERT INTO audit_heads (origin, tree_size, root, timestamp_ms, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?)", (origin, tree_size, b"\0" * 32, 4_102_444_800_000, key, b"\0" * 64))


def test_a_forged_head_far_ahead_does_not_stop_signing_silently(store_target: Target, keys: Keys) -> None:
    # Broke: the leader took the newest head row's size as "signed up to here" without checking its
    # signature. One row claiming 2**40 entries and the log's key id, and no head was ever signed again,
    # with no error anywhere until someone ran verify.
    _signed(store_target, keys, 2)
    _forge_head(store_target, 2**40)
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    leader.append(make_record(2))
    with pytest.raises(IntegrityError, match="not signed by this process's key"):
        leader.sign_now()
    leader.close(timeout_s=0)
    assert [h.tree_size for h in open_store(store_target).heads()][-2:] == [2, 2**40]


def test_a_replica_that_does_not_lead_never_hands_out_a_forged_head(store_target: Target, keys: Keys) -> None:
    _signed(store_target, keys, 2)
    leader = AuditLog(open_store(store_target), signer=keys.signer)
    leader.append(make_record(2))
    assert leader.sign_now() is not None and leader.is_leader
    _forge_head(store_target, 2**40)
    other = AuditLog(open_store(store_target), signer=keys.signer)
    other.append(make_record(3))
    with pytest.raises((IntegrityError, Busy)):
        other.sign_now(timeout_s=1)
    other.close(timeout_s=0)
    leader.close(timeout_s=0)
