"""The storage seam of the audit log: what any backing database must provide.

:mod:`bastion.audit.db_store` implements it once for SQLite and PostgreSQL and names the few
backend-specific statements it uses. Writers reserve leaf indices inside their transaction
(:meth:`AppendTxn.reserve`); one elected leader (:meth:`Store.try_lead`) integrates them into the tree
and signs heads (:class:`Leader`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from bastion.audit.heads import SignedTreeHead


@dataclass(frozen=True)
class EntryRow:
    """One stored leaf with the columns the log indexes for search (copies of leaf fields)."""

    seq: int
    kind: str
    time: str
    request_id: str | None
    principal: str | None
    model: str | None
    leaf: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class Filters:
    """Search criteria; ``None`` means any. Times are RFC 3339 UTC strings (compared as text)."""

    kind: str | None = None
    principal: str | None = None
    model: str | None = None
    request_id: str | None = None
    since: str | None = None
    until: str | None = None


#: ``(seq, leaf, leaf_hash, index_ok)`` as read by :meth:`Store.scan`. ``index_ok`` is a fast filter
#: computed by the database: true when the leaf starts with ``records.index_prefix()`` of the row's search
#: columns. The verifier re-checks every row where it is false in Python before reporting anything.
ScanRow = tuple[int, bytes, bytes, "int | None"]


class AppendTxn(Protocol):
    """Operations inside one write transaction; the store commits it durably on leaving the context."""

    def reserve(self, count: int) -> int:
        """Reserve the next ``count`` leaf indices (locked until commit, given back on rollback); returns
        the first."""
        ...

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        """Insert new leaves (IntegrityError if an index is already taken)."""
        ...

    def insert_bodies(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """Insert encrypted bodies as ``(seq, part, blob)``."""
        ...


class LeaderTxn(Protocol):
    """The leader's write transaction."""

    def tree_state(self) -> tuple[int, bytes]:
        """The integrated tree size and serialised frontier (locked for this transaction)."""
        ...

    def set_tree_state(self, size: int, frontier: bytes) -> None:
        """Record the new integrated size and frontier."""
        ...

    def latest_head(self) -> SignedTreeHead | None:
        """The most recent signed tree head."""
        ...

    def insert_head(self, head: SignedTreeHead) -> None:
        """Store a signed tree head."""
        ...


class Leader(Protocol):
    """This process's leadership of the log (integrate sequenced entries, sign heads)."""

    def state(self) -> tuple[int, bytes, int, int]:
        """``(integrated size, frontier, size a head is wanted for, sequenced count)``."""
        ...

    def pending(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        """``(seq, leaf, leaf_hash)`` of the entries ``start <= seq < stop``, in order."""
        ...

    def latest_head(self) -> SignedTreeHead | None:
        """The newest signed head."""
        ...

    def transaction(self) -> AbstractContextManager[LeaderTxn]:
        """A write transaction on the session that holds the leadership."""
        ...

    def alive(self) -> bool:
        """False once leadership is known lost."""
        ...

    def release(self) -> None:
        """Step down."""
        ...


class Store(Protocol):
    """A durable home for leaves, bodies, tree heads and the tree's frontier."""

    def transaction(self) -> AbstractContextManager[AppendTxn]:
        """A serialised, durable write transaction (one writer at a time across processes)."""
        ...

    def meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the log's key/value metadata."""
        ...

    def set_meta_once(self, key: str, value: str) -> str:
        """Set ``key`` unless already set; returns the value that is stored."""
        ...

    def tree_state(self) -> tuple[int, bytes]:
        """The integrated tree size and frontier as last committed by the leader."""
        ...

    def sequenced(self) -> int:
        """How many entries writers have committed (the next leaf index)."""
        ...

    def request_head(self, size: int) -> None:
        """Ask the leader for a signed head covering at least ``size`` entries."""
        ...

    def try_lead(self) -> Leader | None:
        """Take the log's leadership if no live process holds it."""
        ...

    def latest_head(self) -> SignedTreeHead | None:
        """The newest signed tree head."""
        ...

    def count(self) -> int:
        """How many entry rows are stored."""
        ...

    def scan(self, start: int = 0, batch: int = 65536) -> Iterator[list[ScanRow]]:
        """Every row in ``seq`` order from ``start``, in batches: leaf, stored hash, index agreement."""
        ...

    def leaves_between(self, since: str | None, until: str | None) -> Iterator[list[tuple[int, bytes]]]:
        """``(seq, leaf)`` of entries with ``since <= time < until`` in ``seq`` order, in batches."""
        ...

    def leaf_hashes(self, stop: int) -> list[bytes]:
        """The stored leaf hashes of entries ``0 .. stop-1`` in order."""
        ...

    def entry(self, seq: int) -> EntryRow | None:
        """One entry by leaf index."""
        ...

    def bodies(self, seq: int) -> dict[str, bytes]:
        """The encrypted bodies stored for an entry, by part."""
        ...

    def heads(self) -> list[SignedTreeHead]:
        """Every signed tree head, oldest first."""
        ...

    def find(self, filters: Filters, limit: int) -> list[EntryRow]:
        """Entries matching ``filters``, newest first, at most ``limit``."""
        ...

    def prune_bodies(self, before: str) -> int:
        """Delete stored bodies of entries older than ``before``; returns how many were deleted."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
