"""Tamper fuzz on a real 10,000-entry log: every edit, deletion, reordering, truncation, forged tail and
key swap is caught by verify, which names the entry (or, for a consistent rewrite, the signed range)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import KeyFiles, SignedTreeHead, load_public_key, open_store
from bastion.audit.merkle import Frontier, leaf_hash
from bastion.audit.verify import VerifyReport, verify_log
from bastion.store import Target
from tests.conftest import raw_connect

N = 10_000
SEEDS = range(6)
REQUEST_FIELDS = [
    "time", "request_id", "principal", "model", "weights_digest", "backend", "decision", "status",
    "tokens_in", "tokens_out", "latency_ms", "request_sha256", "response_sha256", "partial",
]  # fmt: skip


def verify(db: Target, files: KeyFiles) -> VerifyReport:
    store = open_store(db)
    try:
        return verify_log(store, load_public_key(files.public_key))
    finally:
        store.close()


def changed(value: object) -> object:
    """A different value of the same JSON type (what a careful forger would write)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    return "x"


def rewrite_leaf(conn: Any, seq: int, field: str, rehash: bool) -> None:
    leaf = conn.execute("SELECT leaf FROM audit_entries WHERE seq = ?", (seq,)).fetchone()[0]
    doc = orjson.loads(leaf)
    doc[field] = changed(doc[field])
    new = orjson.dumps(doc)
    conn.execute("UPDATE audit_entries SET leaf = ? WHERE seq = ?", (new, seq))
    if rehash:  # a careful forger: hash and search column updated to match
        conn.execute("UPDATE audit_entries SET leaf_hash = ? WHERE seq = ?", (leaf_hash(new), seq))
        if field in ("time", "request_id", "principal", "model"):
            conn.execute(f"UPDATE audit_entries SET {field} = ? WHERE seq = ?", (doc[field], seq))


def replace_in_leaves(conn: Any, old: bytes, new: bytes, seq: int | None = None) -> None:
    """Rewrite ``old`` to ``new`` in the stored leaves (one entry, or all): the same edit on either backend."""
    where, args = (" WHERE seq = ?", (seq,)) if seq is not None else ("", ())
    rows = conn.execute("SELECT seq, leaf FROM audit_entries" + where, args).fetchall()
    for row_seq, leaf in rows:
        conn.execute("UPDATE audit_entries SET leaf = ? WHERE seq = ?", (bytes(leaf).replace(old, new), row_seq))


def test_the_untouched_log_verifies(big_log: tuple[Target, KeyFiles]) -> None:
    report = verify(*big_log)
    assert report.ok, report.problems
    assert report.entries == N and report.signed_size == N and report.heads >= 10


@pytest.mark.parametrize("seed", SEEDS)
def test_editing_any_field_of_any_entry_names_that_entry(
    seed: int, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    rng = random.Random(seed)
    db = copy_big_log()
    seq = rng.randrange(1, N - 1)  # request entries
    field = REQUEST_FIELDS[seed * 2 % len(REQUEST_FIELDS)]
    conn = raw_connect(db)
    rewrite_leaf(conn, seq, field, rehash=False)
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert not report.ok
    assert report.first_bad_entry == seq, (field, report.problems)


@pytest.mark.parametrize("field", REQUEST_FIELDS)
def test_editing_a_field_and_its_leaf_hash_is_caught_by_the_signed_heads(
    field: str, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    seq = 4321
    db = copy_big_log()
    conn = raw_connect(db)
    rewrite_leaf(conn, seq, field, rehash=True)
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert not report.ok
    assert report.bad_range is not None
    lo, hi = report.bad_range
    # Located to the span between the last head that still matches and the first that does not.
    assert lo <= seq <= hi and hi - lo < 1500, report.bad_range
    assert any(p.kind == "root" for p in report.problems)


def test_editing_the_admin_entry_details_names_it(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    replace_in_leaves(conn, b"policies/gateway.cedar", b"policies/other.cedar", N - 1)
    conn.commit()
    conn.close()
    assert verify(db, big_log[1]).first_bad_entry == N - 1


@pytest.mark.parametrize("column", ["principal", "model", "request_id", "time", "kind"])
def test_editing_a_search_column_to_hide_an_entry_names_it(
    column: str, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute(f"UPDATE audit_entries SET {column} = 'zzz' WHERE seq = 777")
    conn.commit()
    conn.close()
    assert verify(db, big_log[1]).first_bad_entry == 777


@pytest.mark.parametrize("seed", SEEDS)
def test_deleting_an_entry_names_it(
    seed: int, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    seq = random.Random(seed).randrange(0, N - 1)
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute("DELETE FROM audit_entries WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert not report.ok and report.first_bad_entry == seq


def test_deleting_an_entry_and_renumbering_the_rest_names_it(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute("DELETE FROM audit_entries WHERE seq = 5000")
    # in two steps, so no row takes a seq still in use (PostgreSQL checks the key row by row)
    conn.execute("UPDATE audit_entries SET seq = -seq WHERE seq > 5000")
    conn.execute("UPDATE audit_entries SET seq = -seq - 1 WHERE seq < 0")
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert report.first_bad_entry == 5000


@pytest.mark.parametrize("seed", SEEDS)
def test_reordering_two_entries_names_the_first(
    seed: int, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    rng = random.Random(seed)
    a, b = sorted(rng.sample(range(N), 2))
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute("UPDATE audit_entries SET seq = -1 WHERE seq = ?", (a,))
    conn.execute("UPDATE audit_entries SET seq = ? WHERE seq = ?", (a, b))
    conn.execute("UPDATE audit_entries SET seq = ? WHERE seq = -1", (b,))
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert report.first_bad_entry == a
    assert {p.entry for p in report.problems} >= {a, b}


@pytest.mark.parametrize("keep", [9_999, 9_000, 1])
def test_truncating_the_log_names_the_first_missing_entry(
    keep: int, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute("DELETE FROM audit_entries WHERE seq >= ?", (keep,))
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert not report.ok and report.first_bad_entry == keep


def _forge_tail(db: Target, keep: int, count: int) -> None:
    """Replace entries keep.. with a self-consistent fake tail: right seqs, hashes, columns, frontier."""
    conn = raw_connect(db)
    conn.execute("DELETE FROM audit_entries WHERE seq >= ?", (keep,))
    hashes = [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM audit_entries ORDER BY seq")]
    for seq in range(keep, keep + count):
        doc = {"v": 1, "seq": seq, "kind": "admin", "time": "2026-01-01T00:00:00.000Z",
               "actor": "os:mallory", "action": "noop", "before_digest": None, "after_digest": None,
               "details": {}}  # fmt: skip
        leaf = orjson.dumps(doc)
        digest = leaf_hash(leaf)
        hashes.append(digest)
        conn.execute(
            "INSERT INTO audit_entries (seq, kind, time, request_id, principal, model, leaf, leaf_hash)"
            " VALUES (?, 'admin', ?, NULL, 'os:mallory', NULL, ?, ?)",
            (seq, doc["time"], leaf, digest),
        )
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    conn.execute("UPDATE audit_tree SET size = ?, frontier = ?", (frontier.size, frontier.to_bytes()))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("keep", [9_000, 7_777])
def test_a_consistent_fake_tail_is_caught_and_located(
    keep: int, copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    _forge_tail(db, keep, N - keep)
    report = verify(db, big_log[1])
    assert not report.ok
    assert report.bad_range is not None
    lo, hi = report.bad_range
    assert lo <= keep <= hi and hi - lo < 1500
    assert report.signed_size <= keep


def test_swapping_the_signing_key_is_caught_at_the_first_head(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    """Mallory rewrites an entry, recomputes every root and re-signs every head with her own key."""
    db = copy_big_log()
    conn = raw_connect(db)
    rewrite_leaf(conn, 1234, "principal", rehash=True)
    hashes = [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM audit_entries ORDER BY seq")]
    mallory = Ed25519PrivateKey.generate()
    rows = conn.execute("SELECT id, origin, tree_size, timestamp_ms FROM audit_heads ORDER BY id").fetchall()
    for head_id, origin, size, ts in rows:
        frontier = Frontier()
        for h in hashes[:size]:
            frontier.append(h)
        forged = SignedTreeHead.sign(mallory, origin, size, frontier.root(), ts)
        conn.execute(
            "UPDATE audit_heads SET root = ?, key_id = ?, signature = ? WHERE id = ?",
            (forged.root, forged.key_id, forged.signature, head_id),
        )
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])  # verified with the operator's real public key
    assert not report.ok
    first = report.problems[0]
    assert first.kind == "signature" and first.head == 0
    assert f"claims key {SignedTreeHead.sign(mallory, 'o', 1, b'0' * 32, 0).key_id}" in first.message


def test_editing_a_signed_head_is_caught(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    conn.execute("UPDATE audit_heads SET tree_size = tree_size - 1 WHERE id = 3")
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert [p.head for p in report.problems] == [2]


def test_pruning_bodies_keeps_the_log_verifiable(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    store = open_store(db)
    store.prune_bodies("2999-01-01T00:00:00.000Z")
    assert verify_log(store, load_public_key(big_log[1].public_key)).ok
    store.close()


def test_a_wholesale_rewrite_lists_at_most_100_problems_and_still_checks_every_head(
    copy_big_log: Callable[[], Target], big_log: tuple[Target, KeyFiles]
) -> None:
    db = copy_big_log()
    conn = raw_connect(db)
    replace_in_leaves(conn, b"allow", b"ALLOW")
    conn.commit()
    conn.close()
    report = verify(db, big_log[1])
    assert len(report.problems) == 100 and any("more problems not listed" in n for n in report.notes)
    assert report.first_bad_entry == 1  # entry 0 is the admin init entry, which has no decision
    assert report.entries == N
