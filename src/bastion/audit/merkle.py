"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

Leaves are hashed as ``SHA-256(0x00 || leaf)`` and interior nodes as ``SHA-256(0x01 || left || right)``;
the prefixes are what stop a leaf from being passed off as an interior node (second-preimage attack on
plain Merkle trees). The tree over ``n`` leaves splits at the largest power of two below ``n``.

:class:`TreeLevels` builds every level of the tree in one pass with list comprehensions (the hot loop
stays inside CPython's hashlib), promoting an unpaired right-most node unchanged to the next level, which
gives exactly the RFC 6962 root. Every *complete* subtree of the tree is then a stored node, so the root
of any earlier size, audit paths and consistency proofs come from the levels without rehashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """The RFC 6962 hash of one leaf: SHA-256(0x00 || leaf)."""
    return _sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n`` >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeLevels:
    """All levels of the Merkle tree over a list of leaf hashes (level 0 = the leaf hashes)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels: list[list[bytes]] = [list(leaf_hashes)]
        sha = _sha256
        prefix = NODE_PREFIX
        while len(levels[-1]) > 1:
            cur = levels[-1]
            nxt = [sha(prefix + a + b).digest() for a, b in zip(cur[0::2], cur[1::2], strict=False)]
            if len(cur) % 2:
                nxt.append(cur[-1])  # promoted unchanged: RFC 6962's unbalanced right edge
            levels.append(nxt)
        self.levels = levels
        self.size = len(leaf_hashes)

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree over the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
        if size == 0:
            return EMPTY_ROOT
        return self.subtree(0, size)

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range that the RFC 6962 recursion can ask for."""
        n = hi - lo
        if n == 1:
            return self.levels[0][lo]
        if n & (n - 1) == 0 and lo % n == 0:
            return self.levels[n.bit_length() - 1][lo // n]  # a complete subtree is a stored node
        k = _largest_power_of_two_below(n)
        return node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """The RFC 6962 audit path PATH(index, D[0:size])."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no inclusion proof for leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self.subtree(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self.subtree(lo, lo + k)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 6962 consistency proof PROOF(old_size, D[0:new_size])."""
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
        if old_size == new_size:
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self.subtree(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete), self.subtree(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.subtree(lo, lo + k)]


def verify_inclusion(leaf_digest: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """Check an audit path (RFC 9162 section 2.1.3.2); True when ``leaf_digest`` is at ``index``."""
    if index >= size or index < 0:
        return False
    fn, sn = index, size - 1
    r = leaf_digest
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 section 2.1.4.2): the new tree extends the old one."""
    if old_size == new_size:
        return old_root == new_root and not proof
    if old_size == 0 or old_size > new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class Frontier:
    """The right edge of a growing tree: one complete-subtree hash per set bit of the size.

    Appending costs amortised one node hash per leaf and the root costs at most log2(n) hashes, so the
    writer never rereads old leaves. Serialised as the concatenation of its hashes (oldest subtree first).
    """

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} needs {size.bit_count()} nodes, got {len(nodes)}")
        self.size = size
        self.nodes = list(nodes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> Frontier:
        """Rebuild a frontier stored with :meth:`to_bytes`."""
        if len(blob) % HASH_SIZE:
            raise ValueError("frontier blob is not a whole number of hashes")
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        """The nodes concatenated, for storage."""
        return b"".join(self.nodes)

    def append(self, digest: bytes) -> None:
        """Add one leaf hash at the right edge."""
        node = digest
        size = self.size
        while size & 1:  # merge with every complete subtree of equal height on the right edge
            node = node_hash(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        """The RFC 6962 root of the tree so far."""
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc
