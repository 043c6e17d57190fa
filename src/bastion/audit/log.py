"""The append side of the audit log: group commit, durable before return, signed tree heads.

Durability guarantee (exactly): ``append_request`` / ``append_admin`` return only after the transaction
holding the entry has committed durably (SQLite: ``synchronous=FULL`` in WAL mode, i.e. the WAL was
fsynced; PostgreSQL: ``synchronous_commit = on``, the WAL flushed). An entry whose append returned
survives a SIGKILL of the process, and an OS crash or power cut on storage that honours fsync. An append
that had not returned may or may not be in the log (never half: a batch is one transaction).

Many writers, one leader: any number of processes append to one log. Each batch reserves its leaf
indices from the database's counter inside its own transaction (no gap, no duplicate, whatever the
number of processes). One elected process integrates those entries into the Merkle tree and signs tree
heads (:mod:`bastion.audit.leader`); when it dies another takes over within about a second.

An entry becomes *tamper-evident* when a signed tree head covers it: at most ``sth_interval_s`` seconds
(plus up to one election period, ``min(sth_interval_s, 1)`` s, for the leader to pick it up) or
``sth_every`` entries later, and on ``close()``. Entries after the last signed head (the "unsigned
tail") can be rewritten by someone with write access to the database without ``verify`` noticing;
``verify`` checks them as rows and reports the tail's length.

Group commit: callers put records on a queue and wait; one writer thread takes everything queued (up to
``max_batch``), writes it in one transaction (one fsync), then wakes every waiter. Under load the cost
of the fsync is shared by the whole batch; with one caller a batch is one entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.db_store import open_store
from bastion.audit.heads import ORIGIN_PREFIX, SignedTreeHead
from bastion.audit.keys import BodyCipher, load_signing_key
from bastion.audit.leader import Integrator
from bastion.audit.merkle import LEAF_PREFIX
from bastion.audit.records import AdminRecord, EntryRef, Record, RequestRecord, StoreBodies, leaf_prefix
from bastion.audit.store import EntryRow, Store
from bastion.config import AuditSettings
from bastion.errors import BastionError, Busy, ConfigError, IntegrityError, UsageError


def log_origin(store: Store) -> str:
    """The log's origin line for tree heads (``bastion-audit/<random id fixed at creation>``)."""
    return ORIGIN_PREFIX + store.set_meta_once("log_id", uuid.uuid4().hex)


@dataclass
class _Pending:
    """A record encoded (minus its index) in the caller's thread, waiting for the writer."""

    tail: bytes
    row: tuple[str, str, str | None, str | None, str | None]
    bodies: dict[str, bytes]
    #: an awaiting coroutine's future (settled on its own loop) or a synchronous caller's callback
    future: asyncio.Future[EntryRef] | None
    done: Callable[[EntryRef | None, BaseException | None], None] | None
    ref: EntryRef | None = field(default=None)


def _encode(record: Record, store_bodies: StoreBodies) -> tuple[bytes, tuple[str, str, Any, Any, Any]]:
    doc = {"kind": record.kind, **record.leaf_fields(store_bodies)}
    try:
        tail = orjson.dumps(doc)[1:]  # '"kind":...}' ; the writer prepends '{"v":1,"seq":N,'
    except TypeError as exc:
        raise UsageError(f"audit record cannot be encoded as JSON: {exc}") from exc
    if isinstance(record, RequestRecord):
        return tail, (record.kind, record.time, record.request_id, record.principal, record.model)
    return tail, (record.kind, record.time, None, record.actor, None)


class AuditLog:
    """An open audit log. Thread-safe; ``append_request`` may be awaited from any event loop."""

    def __init__(
        self,
        store: Store,
        *,
        signer: Ed25519PrivateKey | None,
        body_cipher: BodyCipher | None = None,
        store_bodies: StoreBodies = "hashes",
        sth_interval_s: float = 10.0,
        sth_every: int = 10_000,
        max_batch: int = 8192,
        wall_clock: Callable[[], float] = time.time,
        on_leadership: Callable[[bool], None] | None = None,
    ) -> None:
        if store_bodies == "full" and body_cipher is None:
            raise ConfigError(
                "audit.store_bodies is 'full' but no body key was given",
                hint="Run 'bastion audit init' and set audit.body_key, or use store_bodies = 'hashes'.",
            )
        self.store = store
        self.origin = log_origin(store)
        self._signer = signer
        self._cipher = body_cipher
        self._store_bodies = store_bodies
        self._max_batch = max_batch
        self._clock = wall_clock
        self._integrator = Integrator(
            store,
            signer,
            self.origin,
            interval_s=sth_interval_s,
            sth_every=sth_every,
            clock=wall_clock,
            on_leadership=on_leadership,
        )
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._closing = False
        self._closed = False
        self._submitted = 0  # appends queued, and appends committed or failed, for flush()
        self._settled = 0
        self._writer = threading.Thread(target=self._run, name="bastion-audit-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, settings: AuditSettings, *, require_key: bool = True) -> AuditLog:
        """Open the log described by ``settings`` (database, signing key, body key)."""
        signer = load_signing_key(settings.signing_key) if require_key else None
        cipher = BodyCipher.from_file(settings.body_key) if settings.store_bodies == "full" else None
        return cls(
            open_store(settings.target()),
            signer=signer,
            body_cipher=cipher,
            store_bodies=settings.store_bodies,
            sth_interval_s=settings.sth_interval_s,
            sth_every=settings.sth_every,
        )

    # -- appending ---------------------------------------------------------------------------------

    async def append_request(self, record: RequestRecord) -> EntryRef:
        """Append a gateway request; returns once the entry is durable (see the module docstring)."""
        fut: asyncio.Future[EntryRef] = asyncio.get_running_loop().create_future()
        self._submit(record, fut, None)
        return await fut

    def append_admin(
        self,
        action: str,
        actor: str,
        before_digest: str | None = None,
        after_digest: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EntryRef:
        """Append an admin action (blocking); returns once the entry is durable."""
        return self.append(AdminRecord(action, actor, before_digest, after_digest, details or {}))

    def append(self, record: Record) -> EntryRef:
        """Append any record from synchronous code; returns once the entry is durable."""
        event = threading.Event()
        box: list[Any] = [None, None]

        def done(ref: EntryRef | None, exc: BaseException | None) -> None:
            box[0], box[1] = ref, exc
            event.set()

        self._submit(record, None, done)
        event.wait()
        ref, error = box
        if error is not None:
            raise error
        if not isinstance(ref, EntryRef):  # unreachable: the writer always settles with one or the other
            raise BastionError("the audit writer settled an append without a result")
        return ref

    def _submit(
        self,
        record: Record,
        future: asyncio.Future[EntryRef] | None,
        done: Callable[[EntryRef | None, BaseException | None], None] | None,
    ) -> None:
        tail, row = _encode(record, self._store_bodies)
        bodies = record.bodies() if self._store_bodies == "full" else {}
        with self._cond:
            if self._closing:
                raise UsageError("the audit log is closed")
            self._queue.append(_Pending(tail, row, bodies, future, done))
            self._submitted += 1
            self._cond.notify()

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        # Idle, the thread still wakes every period: to campaign for leadership, or (leader) to
        # integrate what other processes appended and sign heads when due.
        idle = self._integrator.period if self._signer is not None else None
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    if not self._cond.wait(timeout=idle):
                        break
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if not batch and self._closing:
                    return
            if batch:
                error: BastionError | None = None
                try:
                    self._commit(batch)
                except BaseException as exc:  # noqa: BLE001 - handed to every waiter, never swallowed
                    error = exc if isinstance(exc, BastionError) else _store_failure(exc)
                _wake(batch, error)
                with self._cond:
                    self._settled += len(batch)
                    self._cond.notify_all()
            self._integrator.tick()  # after the waiters are woken: integration adds no latency

    def _commit(self, batch: list[_Pending]) -> None:
        """Sequence and store one batch in one durable transaction (the leader integrates it later)."""
        sha = hashlib.sha256
        with self.store.transaction() as tx:
            # Reserve first: from here to commit this batch holds the counter, so keep the work short
            # (encoding was done by the callers; what is left needs the index: prefix, hash, AAD).
            first = tx.reserve(len(batch))
            rows: list[EntryRow] = []
            bodies: list[tuple[int, str, bytes]] = []
            now = _iso(self._clock())
            for i, p in enumerate(batch):
                seq = first + i
                leaf = leaf_prefix(seq) + p.tail
                digest = sha(LEAF_PREFIX + leaf).digest()
                kind, t, request_id, principal, model = p.row
                rows.append(EntryRow(seq, kind, t, request_id, principal, model, leaf, digest))
                if self._cipher is not None:
                    bodies.extend(
                        (seq, part, self._cipher.encrypt(seq, part, data)) for part, data in p.bodies.items()
                    )
                p.ref = EntryRef(seq, digest.hex(), now)
            tx.insert_entries(rows)
            if bodies:
                tx.insert_bodies(bodies)

    # -- heads and shutdown ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this process integrates the log and signs its heads now."""
        return self._integrator.is_leader

    def head_wait_s(self) -> float:
        """How long :meth:`sign_now` and :meth:`close` wait for another process's head by default: long
        enough for the leader's next round and, if it died, for this process to take over."""
        return 3 * self._integrator.period + 2.0

    def sign_now(self, timeout_s: float | None = None) -> SignedTreeHead | None:
        """Flush pending appends and return a signed head covering every entry sequenced so far (by any
        process): signed here if this process leads or can take the lead, else the leader's.

        None for an empty log. Raises IntegrityError if the leader refuses a bad row, Busy if no head
        came within ``timeout_s`` (default :meth:`head_wait_s`).
        """
        self.flush()
        target = self.store.sequenced()
        if target == 0:
            return None
        if self._signer is None:
            raise ConfigError("this audit log was opened without its signing key: it cannot sign heads")
        wait = self.head_wait_s() if timeout_s is None else timeout_s
        head = self._integrator.head_covering(target, wait)
        if head is not None:
            return head
        if self._integrator.stalled:
            raise IntegrityError(
                f"no tree head can be signed here: {self._integrator.stalled}",
                hint="Run 'bastion audit verify' to see what was changed (or fix audit.signing_key).",
            )
        raise Busy(
            f"no signed tree head covering {target} entries within {wait:g} s:"
            " another process leads the log and has not signed",
            hint="Check that the process holding the leadership is healthy (it signs every"
            " audit.sth_interval_s), or stop it: another process takes over within a second.",
        )

    def flush(self) -> None:
        """Wait until every append queued so far has been committed (or has failed)."""
        with self._cond:
            target = self._submitted
            while self._settled < target:
                self._cond.wait()

    def close(self, timeout_s: float | None = None) -> SignedTreeHead | None:
        """Flush every pending append, stop the writer and return a signed head covering every entry
        sequenced so far (signed here if this process leads or can; else the leader's, waited for at
        most ``timeout_s``, default :meth:`head_wait_s`); None if there is none. Then step down."""
        with self._cond:
            if self._closed:
                return None
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        head = None
        try:
            target = self.store.sequenced()
            if target and self._signer is not None:
                wait = self.head_wait_s() if timeout_s is None else timeout_s
                head = self._integrator.head_covering(target, wait)
        finally:
            self._integrator.release()
            with self._cond:
                self._closed = True
            self.store.close()
        return head

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wake(batch: list[_Pending], error: BaseException | None) -> None:
    """Wake every waiter of a committed (or failed) batch: one loop callback per event loop, not per entry."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for p in batch:
        if p.future is not None:
            by_loop.setdefault(p.future.get_loop(), []).append(p)
        elif p.done is not None:
            p.done(None if error else p.ref, error)
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, waiters, error)
        except RuntimeError:  # that loop was closed meanwhile: nobody is waiting any more
            pass


def _settle(waiters: list[_Pending], error: BaseException | None) -> None:
    for p in waiters:
        fut = p.future
        if fut is None or fut.done():  # the awaiting task was cancelled; the entry is still in the log
            continue
        if error is not None:
            fut.set_exception(error)
        elif p.ref is not None:
            fut.set_result(p.ref)


def _store_failure(exc: BaseException) -> BastionError:
    return BastionError(
        f"the audit log could not be written: {exc}",
        hint="Check free disk space and the permissions of audit.path; the request was not recorded.",
    )


def _iso(ts: float) -> str:
    t = time.gmtime(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(ts * 1000) % 1000:03d}Z"
