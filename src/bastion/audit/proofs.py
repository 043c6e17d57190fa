"""Inclusion proofs a third party can check without the database, and JSON Lines export.

A proof file holds the leaf bytes (as a UTF-8 string), the audit path, and the signed tree head the path
leads to. Checking it needs only the log's public key: rebuild the checkpoint text, check the Ed25519
signature, hash the leaf with the 0x00 prefix and fold the path (RFC 9162 section 2.1.3.2).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.heads import SignedTreeHead
from bastion.audit.keys import key_id
from bastion.audit.merkle import TreeLevels, leaf_hash, verify_consistency, verify_inclusion
from bastion.audit.records import decode_leaf
from bastion.audit.store import Store
from bastion.errors import IntegrityError, NotFound, UnusableInput, UsageError

PROOF_FORMAT = "bastion-audit-proof/v1"
CONSISTENCY_FORMAT = "bastion-audit-consistency/v1"


@dataclass(frozen=True)
class InclusionProof:
    """One leaf, its audit path and the signed tree head the path proves it is in."""

    seq: int
    leaf: bytes
    path: tuple[bytes, ...]
    head: SignedTreeHead

    def to_json(self) -> dict[str, Any]:
        """The proof file format (``bastion-audit-proof/v1``)."""
        return {
            "format": PROOF_FORMAT,
            "entry": self.seq,
            "leaf": self.leaf.decode("utf-8"),
            "leaf_hash": leaf_hash(self.leaf).hex(),
            "tree_size": self.head.tree_size,
            "path": [base64.b64encode(p).decode() for p in self.path],
            "head": self.head.to_json(),
        }


@dataclass(frozen=True)
class ProofCheck:
    """What a successful :func:`check_proof` established."""

    entry: int
    tree_size: int
    key_id: str
    signed_at: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The result as plain data."""
        return {
            "ok": True,
            "entry": self.entry,
            "tree_size": self.tree_size,
            "key_id": self.key_id,
            "signed_at": self.signed_at,
            "record": self.record,
        }


def _covering_head(heads: list[SignedTreeHead], seq: int) -> SignedTreeHead:
    for head in reversed(heads):
        if head.tree_size > seq:
            return head
    raise NotFound(
        f"entry {seq} is not yet covered by a signed tree head",
        hint="Run 'bastion audit sign' (or wait for the next head) and ask again.",
    )


def build_proof(store: Store, seq: int) -> InclusionProof:
    """An inclusion proof for entry ``seq`` against the newest signed head that covers it."""
    entry = store.entry(seq)
    if entry is None:
        raise NotFound(f"audit entry {seq} does not exist", hint="'bastion audit search' lists entries.")
    head = _covering_head(store.heads(), seq)
    tree = TreeLevels(store.leaf_hashes(head.tree_size))
    return InclusionProof(seq, entry.leaf, tuple(tree.inclusion_path(seq, head.tree_size)), head)


def iter_proofs(store: Store, since: str | None = None, until: str | None = None) -> Iterator[InclusionProof]:
    """Proofs for every entry with ``since <= time < until`` against the newest head, streaming.

    The tree is built once; entries are read batch by batch, so memory stays at the tree's size.
    Entries after the newest head (the unsigned tail) cannot be proven yet and are skipped.
    """
    heads = store.heads()
    if not heads:
        raise NotFound("the audit log has no signed tree head yet", hint="Run 'bastion audit sign'.")
    head = heads[-1]
    tree = TreeLevels(store.leaf_hashes(head.tree_size))
    for rows in store.leaves_between(since, until):
        for seq, leaf in rows:
            if seq >= head.tree_size:
                return
            yield InclusionProof(seq, leaf, tuple(tree.inclusion_path(seq, head.tree_size)), head)


def check_proof(doc: Any, public_key: Ed25519PublicKey, source: str = "proof") -> ProofCheck:
    """Check a proof document: signature on its head, then the leaf's path to the head's root."""
    try:
        if doc.get("format") != PROOF_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {PROOF_FORMAT!r}")
        seq = int(doc["entry"])
        leaf = str(doc["leaf"]).encode("utf-8")
        path = [base64.b64decode(p, validate=True) for p in doc["path"]]
        head = SignedTreeHead.from_json(doc["head"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UnusableInput(
            f"{source} is not a Bastion audit proof: {exc}",
            hint="Produce one with 'bastion audit proof ENTRY_ID > proof.json'.",
        ) from exc
    if not head.verify(public_key):
        raise IntegrityError(
            f"{source}: the tree head is not signed by key {key_id(public_key)} (it claims {head.key_id})",
            hint="Check you were given the log's real public key; otherwise the proof is forged.",
        )
    if not verify_inclusion(leaf_hash(leaf), seq, head.tree_size, path, head.root):
        raise IntegrityError(
            f"{source}: entry {seq} is not in the signed tree of size {head.tree_size}",
            hint="The leaf or its path was altered; ask the log operator for a fresh proof.",
        )
    record = decode_leaf(leaf, seq)
    if record.get("seq") != seq:
        raise IntegrityError(f"{source}: the leaf says seq {record.get('seq')} but the proof says {seq}")
    return ProofCheck(seq, head.tree_size, head.key_id, head.time, record)


@dataclass(frozen=True)
class ConsistencyProof:
    """An RFC 6962 proof that the tree of ``new`` extends the tree of ``old`` (both signed heads)."""

    old: SignedTreeHead
    new: SignedTreeHead
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """The proof as plain data: both heads and the proof hashes (base64)."""
        return {
            "format": CONSISTENCY_FORMAT,
            "ok": True,
            "old_size": self.old.tree_size,
            "new_size": self.new.tree_size,
            "path": [base64.b64encode(p).decode() for p in self.path],
            "old": self.old.to_json(),
            "new": self.new.to_json(),
        }


def prove_consistency(
    store: Store, old: SignedTreeHead, new: SignedTreeHead, public_key: Ed25519PublicKey
) -> ConsistencyProof:
    """Prove from the log's leaves that ``new`` extends ``old``; IntegrityError naming what broke if not.

    Both heads are typically copies kept outside the database (a SIEM, a witness). The proof is built
    from the stored leaves and checked with the RFC 9162 algorithm against both signed roots, so it
    holds only if the log still contains exactly the history both heads signed.
    """
    for name, head in (("OLD", old), ("NEW", new)):
        if not head.verify(public_key):
            raise IntegrityError(
                f"{name} head (size {head.tree_size}) is not signed by key {key_id(public_key)}"
                f" (it claims {head.key_id})",
                hint="Check you were given the log's real public key; otherwise the head is forged.",
            )
    if old.origin != new.origin:
        raise UsageError(f"the heads come from different logs ({old.origin} and {new.origin})")
    if old.tree_size > new.tree_size:
        raise UsageError(
            f"OLD has {old.tree_size} entries and NEW {new.tree_size}: OLD must be the smaller head",
            hint="Swap the two arguments.",
        )
    if old.tree_size == new.tree_size and old.root != new.root:
        raise IntegrityError(
            f"two heads of size {old.tree_size} sign different roots: the log was forked or rewritten",
            hint="Both signatures are valid, so the signing key signed two histories: it is compromised.",
        )
    size = store.sequenced()
    if new.tree_size > size:
        raise IntegrityError(
            f"NEW covers {new.tree_size} entries but the log has {size}: entries {size}..{new.tree_size - 1}"
            " were removed (truncated)",
        )
    tree = TreeLevels(store.leaf_hashes(new.tree_size))
    for name, head in (("OLD", old), ("NEW", new)):
        if tree.root(head.tree_size) != head.root:
            raise IntegrityError(
                f"the log's first {head.tree_size} entries no longer hash to the root {name} signed:"
                " history was rewritten",
                hint="Run 'bastion audit verify --against' with your heads to locate the change.",
            )
    path = tree.consistency_proof(old.tree_size, new.tree_size) if old.tree_size else []
    if old.tree_size and not verify_consistency(old.tree_size, new.tree_size, old.root, new.root, path):
        raise IntegrityError(f"NEW (size {new.tree_size}) is not an extension of OLD (size {old.tree_size})")
    return ConsistencyProof(old, new, tuple(path))
