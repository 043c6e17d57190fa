"""Red team 2: a writer of the database edits the leader's tree state (``audit_tree``), not the entries.

The leader folds new leaves into the RFC 6962 frontier it stored in ``audit_tree`` and signs the result.
That frontier is in the database every replica writes: whoever can write a row can write it too. A
frontier of a different tree (same size, other leaves) made the next leader sign a head whose root no
entry of the log supports: a signed commitment to leaves of the attacker's choosing (inclusion proofs
for forged entries verify against it). ``verify`` names the forged head afterwards, but the signature
is out. Fix: the leader keeps the frontier it checked in memory; on taking the lead it rebuilds it from
the leaf hashes (checked against the newest signed head) and refuses, stalled, when the stored one
differs, and while leading it refuses when the stored one moved under it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import AuditLog, create_keys, open_store
from bastion.audit.merkle import Frontier, leaf_hash
from bastion.audit.verify import verify_log
from bastion.errors import IntegrityError
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
