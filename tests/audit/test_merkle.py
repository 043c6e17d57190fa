"""RFC 6962 hashing, proofs and the incremental frontier, checked against the published CT vectors."""

from __future__ import annotations

import hashlib

import pytest

from bastion.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    TreeLevels,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency's reference leaves and roots (the same vectors RFC 6962 implementations
# such as transparency-dev/merkle test against).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as literally as possible."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def test_roots_match_the_certificate_transparency_vectors() -> None:
    tree = TreeLevels([leaf_hash(x) for x in CT_LEAVES])
    assert tree.root(0) == EMPTY_ROOT
    assert [tree.root(n).hex() for n in range(1, 9)] == CT_ROOTS


def test_audit_path_matches_the_published_vector() -> None:
    tree = TreeLevels([leaf_hash(x) for x in CT_LEAVES])
    assert [p.hex() for p in tree.inclusion_path(0, 8)] == CT_PATH_0_OF_8


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    # An interior node's bytes presented as a leaf must not hash to the node.
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31, 64, 100])
def test_every_root_proof_and_frontier_agree_with_the_reference(n: int) -> None:
    leaves = [b"leaf %d" % i for i in range(n)]
    hashes = [leaf_hash(x) for x in leaves]
    tree = TreeLevels(hashes)
    frontier = Frontier()
    for m in range(1, n + 1):
        frontier.append(hashes[m - 1])
        root = reference_root(leaves[:m])
        assert tree.root(m) == root == frontier.root()
        for i in range(m):
            assert verify_inclusion(hashes[i], i, m, tree.inclusion_path(i, m), root)
        for old in range(1, m + 1):
            assert verify_consistency(old, m, tree.root(old), root, tree.consistency_proof(old, m))


def test_inclusion_fails_for_wrong_leaf_index_or_root() -> None:
    hashes = [leaf_hash(b"%d" % i) for i in range(10)]
    tree = TreeLevels(hashes)
    path = tree.inclusion_path(3, 10)
    root = tree.root()
    assert verify_inclusion(hashes[3], 3, 10, path, root)
    assert not verify_inclusion(hashes[4], 3, 10, path, root)
    assert not verify_inclusion(hashes[3], 2, 10, path, root)
    assert not verify_inclusion(hashes[3], 3, 10, path, tree.root(9))
    assert not verify_inclusion(hashes[3], 3, 10, path[:-1], root)


def test_consistency_fails_when_history_was_rewritten() -> None:
    hashes = [leaf_hash(b"%d" % i) for i in range(20)]
    forged = list(hashes)
    forged[4] = leaf_hash(b"forged")
    old, new = TreeLevels(hashes), TreeLevels(forged)
    proof = new.consistency_proof(7, 20)
    assert not verify_consistency(7, 20, old.root(7), new.root(20), proof)


def test_frontier_round_trips_through_bytes() -> None:
    frontier = Frontier()
    for i in range(37):
        frontier.append(leaf_hash(b"%d" % i))
    again = Frontier.from_bytes(frontier.size, frontier.to_bytes())
    assert again.root() == frontier.root()
    again.append(leaf_hash(b"next"))
    frontier.append(leaf_hash(b"next"))
    assert again.root() == frontier.root()


def test_frontier_rejects_a_blob_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="needs 2 nodes"):
        Frontier.from_bytes(3, b"\x00" * 32)
