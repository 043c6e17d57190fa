"""One elected process integrates sequenced entries into the tree and signs tree heads.

Writers (every process) only *sequence*: they reserve leaf indices from the database's counter in the
transaction that inserts their entries (:mod:`bastion.audit.db_store`). Folding those leaves into the
RFC 6962 frontier and signing heads is the job of one process at a time, the holder of the log's
session lock (PostgreSQL: ``pg_try_advisory_lock`` on a dedicated session; SQLite: ``flock`` on a file
next to the database). The operating system or the server drops that lock when its holder dies, so
after a ``kill -9`` another process wins the next election: every process that holds the signing key
campaigns every ``period`` seconds (``min(sth_interval_s, 1)``), and the winner integrates everything
sequenced so far, so its first head covers every entry whose append had returned.

What the leader signs, and when: while folding leaves it signs a head each time the tree has grown by
``sth_every`` since the last head (so heads are ``sth_every`` apart however the leaves arrive), the first
entry of an empty log, and at the end of a round when ``sth_interval_s`` has passed since the last head,
when a caller asked for a head (``wanted``) or on :meth:`Integrator.head_covering`. It never integrates
past a row that is missing, misplaced or whose stored hash is not the hash of its leaf: it stops there
(``stalled``) and signs nothing over it, and ``audit verify`` names the row.

Nor does it trust the frontier stored in ``audit_tree`` (any writer of the database can write that row:
a frontier of another tree made the next leader sign a root no entry supports, red team 2). On taking
the lead it rebuilds the frontier from the stored leaf hashes, checks it against the newest signed head
and the stored one, and keeps it in memory; while it leads, a stored frontier that moved under it stops
it too. Likewise a head row: the leader counts on the newest head only once its signature and size
check out, and no process with the key hands out a head it cannot verify.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.heads import SignedTreeHead
from bastion.audit.keys import key_id
from bastion.audit.merkle import LEAF_PREFIX, Frontier
from bastion.audit.records import leaf_prefix
from bastion.audit.store import Leader, Store
from bastion.errors import IntegrityError

log = logging.getLogger("bastion.audit")

#: most leaves one integration round reads (bounded memory and a bounded leader transaction)
ROUND_MAX = 65_536


def _leaf_problem(seq: int, expected: int, leaf: bytes, stored: bytes) -> str | None:
    """Why the leader must not sign over this row (None: it may)."""
    if seq != expected:
        return f"entry {expected} is missing although {seq} is sequenced (deleted?)"
    if not leaf.startswith(leaf_prefix(seq)):
        return f"entry {seq}: its leaf does not say seq {seq} (moved or edited)"
    if hashlib.sha256(LEAF_PREFIX + leaf).digest() != stored:
        return f"entry {seq}: leaf does not match its stored hash (edited)"
    return None


class Integrator:
    """Campaign for the log's leadership and, while leader, integrate and sign. Thread-safe.

    ``tick`` is called by the log's writer thread (after each batch and when idle); ``head_covering``
    by whoever needs a head now (``sign_now``, ``close``).
    """

    def __init__(
        self,
        store: Store,
        signer: Ed25519PrivateKey | None,
        origin: str,
        *,
        interval_s: float,
        sth_every: int,
        clock: Callable[[], float],
        on_leadership: Callable[[bool], None] | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._origin = origin
        self._interval_ms = int(interval_s * 1000)
        self._sth_every = sth_every
        self._clock = clock
        self._on_leadership = on_leadership
        #: how often a non-leader campaigns and the leader integrates what other processes sequenced
        self.period = min(interval_s, 1.0)
        self._lock = threading.Lock()
        self._leader: Leader | None = None
        #: the frontier this leader checked (rebuilt from the leaves on taking the lead), None until then
        self._frontier: Frontier | None = None
        #: the signature of the newest head this process checked (a head row is checked once)
        self._verified = b""
        self._next_campaign = 0.0
        self._next_round = 0.0
        self._key_id = key_id(signer.public_key()) if signer is not None else None
        #: why this process cannot sign: a row it must not sign over, or a key not the log's
        self.stalled: str | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the leadership now."""
        return self._leader is not None

    def tick(self) -> None:
        """Campaign when due (non-leader) or integrate when due (leader); never raises."""
        if self._signer is None:
            return
        now = time.monotonic()
        with self._lock:
            if self._leader is None and now >= self._next_campaign:
                self._campaign(now)
            if self._leader is not None and now >= self._next_round:
                self._next_round = now + self.period
                self._round(force=False)

    def head_covering(self, size: int, timeout_s: float) -> SignedTreeHead | None:
        """A signed head covering at least ``size`` entries: signed here when this process leads or can
        take the lead, else the leader's (asked for through ``wanted``); None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        asked = False
        while True:
            with self._lock:
                if self._leader is None and self._signer is not None:
                    self._campaign(time.monotonic())
                if self._leader is not None:
                    head = self._catch_up(size)
                    if head is not None and head.tree_size >= size:
                        return head
                    if self.stalled:
                        return None
            head = self._store.latest_head()
            if head is not None and head.tree_size >= size and self._genuine(head):
                return head
            if not asked:
                self._store.request_head(size)
                asked = True
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.1, self.period / 2))

    def _genuine(self, head: SignedTreeHead) -> bool:
        """Whether ``head`` is signed by this process's key (without a key: taken as the leader's)."""
        return self._signer is None or head.verify(self._signer.public_key())

    def release(self) -> None:
        """Step down (at close): another process takes over at its next campaign."""
        with self._lock:
            self._step_down()

    # -- inside the lock ---------------------------------------------------------------------------

    def _campaign(self, now: float) -> None:
        self._next_campaign = now + self.period
        try:
            self._leader = self._store.try_lead()
        except Exception as exc:  # noqa: BLE001 - an unreachable database: campaign again next period
            log.warning("audit log: cannot campaign for leadership: %s", exc)
            return
        if self._leader is not None:
            self._next_round = 0.0
            self._frontier = None
            log.info("audit log: this process now integrates the log and signs its tree heads")
            if self._on_leadership is not None:
                self._on_leadership(True)

    def _step_down(self) -> None:
        self._frontier = None
        if self._leader is not None:
            leader, self._leader = self._leader, None
            if self._on_leadership is not None:  # before the release: no one else leads yet
                self._on_leadership(False)
            leader.release()

    def _catch_up(self, size: int) -> SignedTreeHead | None:
        """Integrate rounds (signing at the end) until ``size`` entries are in the tree."""
        before = -1
        while self._leader is not None:
            done, head = self._round(force=True)
            if done >= size or self.stalled or done <= before:
                return head
            before = done
        return None

    def _round(self, force: bool) -> tuple[int, SignedTreeHead | None]:
        """One integration round; (integrated size, newest head). On a store failure: step down."""
        leader = self._leader
        if leader is None or not leader.alive():
            self._step_down()
            return -1, None
        try:
            return self._integrate(leader, force)
        except Exception as exc:  # noqa: BLE001 - a lost session or database: another process may lead
            log.warning("audit log: stepping down as leader: %s", exc)
            self._step_down()
            return -1, None

    def _integrate(self, leader: Leader, force: bool) -> tuple[int, SignedTreeHead | None]:
        if self._signer is None:  # never leads without a key (tick/head_covering check it)
            return -1, None
        size, blob, wanted, sequenced = leader.state()
        newest = leader.latest_head()
        if newest is not None and newest.key_id != self._key_id:
            # A replica configured with another key would sign heads verify rejects: it must not lead.
            log.error(
                "audit log: this process's signing key (id %s) is not the log's (id %s): it will not sign;"
                " fix audit.signing_key",
                self._key_id,
                newest.key_id,
            )
            self._signer = None  # stops campaigning too
            self.stalled = (
                f"this process's signing key (id {self._key_id}) is not the log's (id {newest.key_id})"
            )
            self._step_down()
            return -1, None
        if newest is not None and newest.signature != self._verified:
            # A head row is only a row: one claiming 2**40 entries under the log's key id made the leader
            # believe everything was signed, and it never signed again, silently (red team 2).
            if newest.tree_size > size or not newest.verify(self._signer.public_key()):
                self._refuse(f"the newest tree head (size {newest.tree_size}) is not signed by this"
                             " process's key over the integrated tree (audit_heads edited)")
                return size, None
            self._verified = newest.signature
        checked = self._checked_frontier(size, blob, newest)
        if checked is None:
            return size, newest
        frontier = checked
        signed = newest.tree_size if newest is not None else 0
        now_ms = int(self._clock() * 1000)
        heads: list[SignedTreeHead] = []
        stop = min(sequenced, size + ROUND_MAX)
        problem = None
        if stop > size:
            for seq, leaf, stored in leader.pending(size, stop):
                problem = _leaf_problem(seq, frontier.size, leaf, stored)
                if problem is not None:
                    break
                frontier.append(stored)
                if signed == 0 or frontier.size - signed >= self._sth_every:
                    heads.append(self._sign(frontier, now_ms))
                    signed = frontier.size
            if problem is None and frontier.size < stop:
                problem = f"entry {frontier.size} is missing although {sequenced} entries are sequenced"
        if problem is not None and problem != self.stalled:
            log.error("audit log: not signing past a bad row: %s (run 'bastion audit verify')", problem)
        self.stalled = problem
        latest_ms = heads[-1].timestamp_ms if heads else (newest.timestamp_ms if newest else 0)
        due = force or wanted > signed or now_ms - latest_ms >= self._interval_ms
        if due and frontier.size > signed:
            heads.append(self._sign(frontier, now_ms))
        if frontier.size == size and not heads:
            return size, newest
        with leader.transaction() as tx:
            if tx.tree_state()[0] != size:  # cannot happen with one leader; re-read next round if it does
                return -1, newest
            if frontier.size != size:
                tx.set_tree_state(frontier.size, frontier.to_bytes())
            for head in heads:
                tx.insert_head(head)
        self._frontier = frontier
        return frontier.size, heads[-1] if heads else newest

    def _checked_frontier(self, size: int, blob: bytes, newest: SignedTreeHead | None) -> Frontier | None:
        """A copy of the frontier of the first ``size`` entries that this leader checked, or None (and
        ``stalled`` says why) when the stored one is not it: the leader must never extend a tree state
        a writer of the database made up."""
        known = self._frontier
        if known is not None and known.size == size:
            if known.to_bytes() == blob:
                return Frontier.from_bytes(size, blob)
            return self._refuse(f"the stored frontier of the first {size} entries changed while this"
                                " process led the log (audit_tree edited)")
        # Taking the lead (or the stored size moved): rebuild from the leaves, one read of 32 bytes each.
        try:
            hashes = self._store.leaf_hashes(size)
        except IntegrityError as exc:
            return self._refuse(exc.message)
        rebuilt = Frontier()
        for digest in hashes:
            rebuilt.append(digest)
            if newest is not None and rebuilt.size == newest.tree_size and rebuilt.root() != newest.root:
                return self._refuse(f"the first {newest.tree_size} entries no longer hash to the newest"
                                    " signed head's root (entries rewritten)")
        if rebuilt.to_bytes() != blob:
            return self._refuse(f"the stored frontier does not match the first {size} entries"
                                " (audit_tree edited)")
        self._frontier = rebuilt
        return Frontier.from_bytes(size, blob)

    def _refuse(self, problem: str) -> Frontier | None:
        """Stall on ``problem`` (logged once): no frontier to extend."""
        if problem != self.stalled:
            log.error("audit log: not signing: %s (run 'bastion audit verify')", problem)
        self.stalled = problem
        return None

    def _sign(self, frontier: Frontier, now_ms: int) -> SignedTreeHead:
        assert self._signer is not None  # noqa: S101 - checked by the caller
        return SignedTreeHead.sign(self._signer, self._origin, frontier.size, frontier.root(), now_ms)
