"""Verify a whole audit log in one pass: every leaf, the tree, every signed head and their consistency.

What is checked, in order, and how a failure is named:

1. Rows: entry ``i`` exists, its leaf starts with ``{"v":1,"seq":i,``, its stored leaf hash is
   SHA-256(0x00 || leaf), and its search columns (kind, time, request id, principal, model) equal the
   leaf's fields. A deleted, moved or edited row is named exactly (``first_bad_entry``).
2. The log's state: the sequence counter equals the number of rows (a truncated log is caught here, or
   by a head whose size exceeds the rows; a row inserted beyond the counter, which no writer reserved,
   is named), and the leader's integrated size and frontier fit the rows. Entries sequenced but not
   yet integrated by the leader (the tail after the integrated size) get the same row checks as every
   other; they are reported as not yet covered by a signed head, which is normal for up to a few
   seconds and a problem (``stale``) once the oldest of them waited longer than ``stale_after_s``.
3. Every signed tree head: signature valid for the *given* public key (a re-signed log fails here), root
   equal to the root recomputed from the leaves, sizes never shrinking, and an RFC 6962 consistency proof
   from each head to the next, built from the leaves and checked with the RFC 9162 algorithm.

If the rows are internally consistent but a head's root differs (someone rewrote leaves *and* their
hashes, e.g. a fake tail), the change is located to the entries between the last head that still
matches and the first that does not (``bad_range``); nothing short of an outside copy of the original
leaves can narrow it further, so keep heads frequent (``audit.sth_every``).

4. Heads kept elsewhere (``against``: a SIEM's or a witness's copies): each must be signed by the given
   key, come from this log (origin), fit in the log (else it was truncated) and equal the root recomputed
   at its size (else history up to it was rewritten). This is what catches a writer of the database who
   also holds the signing key, or who cut the log back to an earlier head and deleted the later ones:
   the database alone cannot.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.heads import ORIGIN_PREFIX, SignedTreeHead
from bastion.audit.keys import key_id
from bastion.audit.merkle import LEAF_PREFIX, Frontier, TreeLevels, verify_consistency
from bastion.audit.records import index_prefix, leaf_prefix
from bastion.audit.store import ScanRow, Store


@dataclass(frozen=True)
class Problem:
    """One thing verify found wrong, and the entry (leaf index) or head it concerns."""

    kind: str
    message: str
    entry: int | None = None
    head: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The problem as plain data."""
        return {"kind": self.kind, "message": self.message, "entry": self.entry, "head": self.head}


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_log`."""

    entries: int
    heads: int
    signed_size: int
    root: str
    key_id: str
    problems: tuple[Problem, ...] = ()
    bad_range: tuple[int, int] | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    #: entries the leader has folded into the tree (the rest of the sequenced tail waits for it)
    integrated: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    @property
    def unsigned_tail(self) -> int:
        """Entries not yet covered by any signed head (not tamper-evident yet)."""
        return max(0, self.entries - self.signed_size)

    @property
    def first_bad_entry(self) -> int | None:
        """The lowest entry index a problem names exactly, if any."""
        named = [p.entry for p in self.problems if p.entry is not None]
        return min(named) if named else None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "heads": self.heads,
            "signed_size": self.signed_size,
            "unsigned_tail": self.unsigned_tail,
            "integrated": self.integrated,
            "root": self.root,
            "key_id": self.key_id,
            "first_bad_entry": self.first_bad_entry,
            "bad_range": list(self.bad_range) if self.bad_range else None,
            "problems": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def _index_matches(store: Store, seq: int, leaf: bytes) -> bool:
    """The authoritative index check for one row the database flagged (rules out escaping quirks)."""
    entry = store.entry(seq)
    if entry is None:
        return False
    return leaf.startswith(
        index_prefix(seq, str(entry.kind), str(entry.time), entry.request_id, entry.principal, entry.model)
    )


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def _check_batch(rows: list[ScanRow], first: int) -> list[bytes] | None:
    """The batch's leaf hashes if every row is in place, intact and indexed right; else None."""
    if rows[0][0] != first or rows[-1][0] != first + len(rows) - 1:
        return None  # seq is the primary key, so first/last in place means no gap
    if not all(r[3] for r in rows):
        return None
    sha, prefix = hashlib.sha256, LEAF_PREFIX
    try:
        digests = [sha(prefix + r[1]).digest() for r in rows]
    except TypeError:
        return None  # a non-BLOB leaf: let the slow path name it
    if digests != [r[2] for r in rows]:
        return None
    return digests


def _walk_batch(
    store: Store, rows: list[ScanRow], expected: int, hashes: list[bytes], problems: list[Problem]
) -> int:
    """Check a batch row by row, recording each problem with the entry it concerns."""
    sha = hashlib.sha256
    for seq, leaf, stored, index_ok in rows:
        if seq != expected:
            # Rows are read in seq order, so a jump means entries expected..seq-1 are gone.
            problems.append(
                Problem("missing", f"entries {expected}..{seq - 1} are missing (deleted)", entry=expected)
            )
            # Keep positions aligned so later checks name real indexes; the gap poisons the root.
            hashes.extend([b"\x00" * 32] * (seq - expected))
            expected = seq
        # A forger's UPDATE may turn the BLOB into TEXT (or worse); compare what is stored, as bytes.
        leaf_b, stored_b = _as_bytes(leaf), _as_bytes(stored)
        actual = sha(LEAF_PREFIX + leaf_b).digest()
        if not leaf_b.startswith(leaf_prefix(seq)):
            problems.append(
                Problem("moved", f"entry {seq}: its leaf does not say seq {seq} (moved or edited)", seq)
            )
        elif actual != stored_b:
            problems.append(
                Problem("edited", f"entry {seq}: leaf does not match its stored hash (edited)", seq)
            )
        elif not index_ok and not _index_matches(store, seq, leaf_b):
            problems.append(
                Problem(
                    "index",
                    f"entry {seq}: its search columns disagree with its leaf (edited to hide or mislead)",
                    seq,
                )
            )
        hashes.append(actual)
        expected += 1
    return expected


MAX_PROBLEMS = 100  # listed at most; a wholesale rewrite would otherwise list a million rows


def verify_log(
    store: Store,
    public_key: Ed25519PublicKey,
    progress: Callable[[int], None] | None = None,
    against: Sequence[SignedTreeHead] = (),
    stale_after_s: float | None = None,
    now: float | None = None,
) -> VerifyReport:
    """Recompute the tree from the stored leaves; check every stored head and every head in ``against``.

    ``stale_after_s``: report entries still not covered by a signed head this long after they were
    written as a problem (no process is signing); None: only note them.
    """
    started = time.perf_counter()
    problems: list[Problem] = []
    hashes: list[bytes] = []
    expected = 0
    for rows in store.scan():
        # Fast path: one comprehension per check over the whole batch; only a batch that fails any
        # check is walked row by row to name the problem precisely.
        fast = _check_batch(rows, expected)
        if fast is not None:
            hashes.extend(fast)
            expected += len(rows)
        else:
            expected = _walk_batch(store, rows, expected, hashes, problems)
        if progress is not None:
            progress(expected)
    report = _check_tree(store, public_key, hashes, problems, started, against)
    if stale_after_s is not None and report.ok and report.unsigned_tail:
        report = _check_stale(store, report, stale_after_s, time.time() if now is None else now)
    return report


def stale_after(sth_interval_s: float) -> float:
    """How long an entry may wait for a signed head before verify calls the tail stale: far beyond the
    leader's schedule (an interval plus an election), so only a log nobody signs is reported."""
    return max(60.0, 6 * sth_interval_s)


def _check_stale(store: Store, report: VerifyReport, stale_after_s: float, now: float) -> VerifyReport:
    """A tail that waited too long for a head means no process is signing: the tail is rewritable."""
    oldest = store.entry(report.signed_size)
    if oldest is None:
        return report
    try:
        written = datetime.fromisoformat(oldest.time.replace("Z", "+00:00"))
    except ValueError:  # an unparseable time: the row checks judge the row
        return report
    waited = now - (written if written.tzinfo else written.replace(tzinfo=UTC)).timestamp()
    if waited <= stale_after_s:
        return report
    problem = Problem(
        "stale",
        f"entries {report.signed_size}..{report.entries - 1} are not covered by a signed tree head although"
        f" entry {report.signed_size} was written {waited:.0f} s ago: no process holding the signing key"
        " is integrating the log (run 'bastion audit sign', or start a gateway)",
        entry=report.signed_size,
    )
    return replace(report, problems=(*report.problems, problem))


def _check_outside_heads(
    tree: TreeLevels, origin: str | None, public_key: Ed25519PublicKey, against: Sequence[SignedTreeHead]
) -> list[Problem]:
    """Step 4: heads kept outside the database, each against the tree recomputed from the leaves."""
    problems: list[Problem] = []
    pub_id = key_id(public_key)
    for i, head in enumerate(against):
        where = f"the head kept elsewhere #{i} (size {head.tree_size}, signed {head.time})"
        if not head.verify(public_key):
            problems.append(
                Problem("outside-signature", f"{where} is not signed by key {pub_id}; it proves nothing")
            )
        elif origin is not None and head.origin != origin:
            problems.append(
                Problem("outside-origin", f"{where} belongs to log {head.origin}, not to this log ({origin})")
            )
        elif head.tree_size > tree.size:
            problems.append(
                Problem(
                    "outside-truncated",
                    f"{where} covers {head.tree_size} entries but the log has {tree.size}: entries"
                    f" {tree.size}..{head.tree_size - 1} were removed (truncated)",
                    entry=tree.size,
                )
            )
        elif tree.root(head.tree_size) != head.root:
            problems.append(
                Problem(
                    "outside-rewritten",
                    f"{where}: the log's first {head.tree_size} entries no longer hash to its signed root;"
                    " history up to it was rewritten (and any heads in the database re-signed or forged)",
                )
            )
    return problems


def _frontier_matches(tree: TreeLevels, size: int, blob: bytes) -> bool:
    if size > tree.size:
        return True  # already reported
    try:
        return Frontier.from_bytes(size, blob).root() == tree.root(size)
    except ValueError:
        return False


def _check_tree(
    store: Store,
    public_key: Ed25519PublicKey,
    hashes: list[bytes],
    problems: list[Problem],
    started: float,
    against: Sequence[SignedTreeHead] = (),
) -> VerifyReport:
    """Steps 2 and 3: the stored tree size, then every signed head against the recomputed tree."""
    n = len(hashes)
    sequenced = store.sequenced()
    if sequenced > n:
        problems.append(
            Problem("truncated", f"the log sequenced {sequenced} entries but only {n} remain", entry=n)
        )
    elif sequenced < n:
        problems.append(
            Problem(
                "extra",
                f"{n - sequenced} entries after entry {sequenced - 1} were never reserved from the log's"
                " counter: inserted outside Bastion",
                entry=sequenced,
            )
        )
    integrated, frontier_blob = store.tree_state()
    if integrated > min(n, sequenced):
        problems.append(
            Problem(
                "integrated",
                f"the leader's tree state claims {integrated} entries but the log has {min(n, sequenced)}",
                entry=min(n, sequenced),
            )
        )
    tree = TreeLevels(hashes)
    heads = store.heads()
    pub_id = key_id(public_key)
    bad_range: tuple[int, int] | None = None
    signed = 0
    prev_good = 0
    prev = None
    for i, head in enumerate(heads):
        if not head.verify(public_key):
            problems.append(
                Problem(
                    "signature",
                    f"tree head #{i} (size {head.tree_size}) is not signed by key {pub_id}"
                    f" (it claims key {head.key_id})",
                    head=i,
                )
            )
            bad_range = bad_range or (prev_good, head.tree_size)
            continue
        if head.tree_size > n:
            problems.append(
                Problem(
                    "truncated",
                    f"tree head #{i} signed {head.tree_size} entries but the log has {n}",
                    entry=n,
                    head=i,
                )
            )
            continue
        if prev is not None and head.tree_size < prev.tree_size:
            problems.append(Problem("order", f"tree head #{i} is smaller than the head before it", head=i))
            continue
        if tree.root(head.tree_size) != head.root:
            problems.append(
                Problem(
                    "root",
                    f"tree head #{i} (size {head.tree_size}): the leaves no longer hash to its signed root;"
                    f" entries {prev_good}..{head.tree_size - 1} were changed",
                    head=i,
                )
            )
            bad_range = bad_range or (prev_good, head.tree_size - 1)
            continue
        if prev is not None and prev.tree_size > 0:
            proof = tree.consistency_proof(prev.tree_size, head.tree_size)
            if not verify_consistency(prev.tree_size, head.tree_size, prev.root, head.root, proof):
                problems.append(
                    Problem("consistency", f"tree head #{i} is not an extension of head #{i - 1}", head=i)
                )
                continue
        prev = head
        if bad_range is None:
            prev_good = head.tree_size
            signed = head.tree_size
    log_id = store.meta("log_id")
    origin = ORIGIN_PREFIX + log_id if log_id else None
    problems.extend(_check_outside_heads(tree, origin, public_key, against))
    if not problems and not _frontier_matches(tree, integrated, frontier_blob):
        # Checked last and alone: after any other problem the frontier's mismatch is its consequence.
        problems.append(
            Problem(
                "frontier",
                f"the leader's stored frontier does not match the first {integrated} entries: the next head"
                " would sign a wrong root (the tree state was edited)",
            )
        )
    notes = []
    if against and not any(p.kind.startswith("outside-") for p in problems):
        covered = max(h.tree_size for h in against)
        notes.append(f"{len(against)} outside head(s) match: the first {covered} entries are as signed")
    if not heads:
        notes.append("no signed tree head yet: nothing is tamper-evident (run 'bastion audit sign')")
    elif n > signed and not problems:
        waiting = n - integrated
        notes.append(
            f"{n - signed} newest entries are not yet covered by a signed tree head"
            + (f" ({waiting} not yet integrated by the leader)" if waiting > 0 else "")
        )
    if len(problems) > MAX_PROBLEMS:
        notes.append(f"{len(problems) - MAX_PROBLEMS} more problems not listed")
        problems = problems[:MAX_PROBLEMS]
    return VerifyReport(
        entries=n,
        heads=len(heads),
        signed_size=signed,
        root=tree.root().hex(),
        integrated=integrated,
        key_id=pub_id,
        problems=tuple(problems),
        bad_range=bad_range,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
