"""The audit log's store on SQLite (WAL, ``synchronous=FULL``) or PostgreSQL: one code path.

Two tables carry the log's state. ``audit_sequence`` holds the next leaf index: every writer (any
process) reserves its batch's indices by ``UPDATE ... SET next = next + n`` *in the transaction that
inserts the entries*, so the row lock (SQLite: the file's write lock) orders writers, a rolled-back
batch gives its indices back, and no index is ever skipped or given twice. ``audit_tree`` holds what
the elected leader has integrated: the tree size and its RFC 6962 frontier, plus the size some caller
wants a signed head for (``wanted``). Only the leader writes it and ``audit_heads``, through the session
that holds its leadership lock (:meth:`DbStore.try_lead`).

What differs by backend: the pragmas in :func:`_connect`; the locks (above, and
:meth:`~bastion.store.Connection.try_session_lock`); and the JSON quoting in the scan (``json_quote`` /
``to_json(col)::text``). Durability: SQLite commits with ``synchronous=FULL`` in WAL mode, so the WAL is
fsynced before ``COMMIT`` returns; PostgreSQL's default ``synchronous_commit = on`` flushes the WAL
before ``COMMIT`` returns. Either way a committed batch survives a process kill and a power cut (given a
disk that honours fsync).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bastion.audit.heads import SignedTreeHead
from bastion.audit.records import LEAF_VERSION
from bastion.audit.store import EntryRow, Filters, ScanRow
from bastion.errors import ConfigError, IntegrityError
from bastion.store import (
    Connection,
    ConstraintViolation,
    Migrations,
    PostgresTarget,
    SessionLock,
    Target,
    open_database,
)

MIGRATIONS = Migrations("audit")


@MIGRATIONS
def m001_create_audit_tables(conn: Connection) -> None:
    """Leaves, bodies (separate so prune never touches a leaf), tree heads, the frontier, metadata."""
    conn.execute(
        "CREATE TABLE audit_entries (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, time TEXT NOT NULL,"
        " request_id TEXT, principal TEXT, model TEXT, leaf BLOB NOT NULL, leaf_hash BLOB NOT NULL)"
    )
    for col in ("time", "request_id", "principal", "model"):
        conn.execute(f"CREATE INDEX audit_entries_{col} ON audit_entries ({col})")
    conn.execute(
        "CREATE TABLE audit_bodies (seq INTEGER NOT NULL, part TEXT NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (seq, part))"
    )
    conn.execute(
        "CREATE TABLE audit_heads (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, tree_size INTEGER NOT NULL,"
        " root BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, key_id TEXT NOT NULL, signature BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE audit_tree (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL,"
        " frontier BLOB NOT NULL)"
    )
    conn.execute("INSERT INTO audit_tree (id, size, frontier) VALUES (1, 0, ?)", (b"",))
    conn.execute("CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@MIGRATIONS
def m002_sequence_and_leader(conn: Connection) -> None:
    """Writers reserve indices from a counter; one elected leader integrates and signs (``wanted``:
    the size a non-leader asked a head for). An existing log continues at its tree size."""
    conn.execute("CREATE TABLE audit_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL)")
    conn.execute("INSERT INTO audit_sequence (id, next) SELECT 1, size FROM audit_tree WHERE id = 1")
    conn.execute("ALTER TABLE audit_tree ADD COLUMN wanted INTEGER NOT NULL DEFAULT 0")


#: the session lock whose holder integrates the log and signs its heads
LEADER_LOCK = "audit-leader"


def _connect(target: Target) -> Connection:
    """Open the database with the settings the durability guarantee depends on."""
    conn = open_database(target, MIGRATIONS)
    if conn.dialect == "sqlite":
        # FULL (not NORMAL): in WAL mode NORMAL may lose the last commits on power loss; FULL fsyncs the
        # WAL at every commit, which is what "durable before the append returns" needs.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _head(row: tuple[str, int, bytes, int, str, bytes]) -> SignedTreeHead:
    return SignedTreeHead(row[0], int(row[1]), bytes(row[2]), int(row[3]), row[4], bytes(row[5]))


def _blob(value: object) -> bytes:
    # A row edited by hand may hold TEXT where a BLOB belongs; hand back its bytes and let verify judge.
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def _entry(row: tuple[int, str, str, str | None, str | None, str | None, bytes, bytes]) -> EntryRow:
    return EntryRow(row[0], row[1], row[2], row[3], row[4], row[5], _blob(row[6]), _blob(row[7]))


# The opening bytes every leaf must have (records.index_prefix), rebuilt from the row's search columns.
_SCAN_SQL = """
SELECT seq, leaf, leaf_hash, substr(leaf, 1, length(CAST(p AS BLOB))) = CAST(p AS BLOB)
FROM (
  SELECT seq, leaf, leaf_hash,
    '{"v":' || ? || ',"seq":' || seq || ',"kind":' || json_quote(kind) || ',"time":' || json_quote(time)
    || CASE
         WHEN kind = 'request' THEN ',"request_id":' || json_quote(request_id)
           || ',"principal":' || json_quote(principal) || ',"model":' || json_quote(model)
         WHEN request_id IS NULL AND model IS NULL THEN ',"actor":' || json_quote(principal)
       END
    || ',' AS p
  FROM audit_entries WHERE seq > ? ORDER BY seq LIMIT ?
)
"""


# The same on PostgreSQL: to_json(text)::text quotes as json_quote does, bytes compared as bytea.
_SCAN_SQL_PG = """
SELECT seq, leaf, leaf_hash,
  substring(leaf from 1 for octet_length(convert_to(p, 'UTF8'))) = convert_to(p, 'UTF8')
FROM (
  SELECT seq, leaf, leaf_hash,
    '{"v":' || ? || ',"seq":' || seq || ',"kind":' || to_json(kind)::text || ',"time":' || to_json(time)::text
    || CASE
         WHEN kind = 'request' THEN ',"request_id":' || to_json(request_id)::text
           || ',"principal":' || to_json(principal)::text || ',"model":' || to_json(model)::text
         WHEN request_id IS NULL AND model IS NULL THEN ',"actor":' || to_json(principal)::text
       END
    || ',' AS p
  FROM audit_entries WHERE seq > ? ORDER BY seq LIMIT ?
) AS rows
"""


class _Txn:
    """One write transaction: a writer's (reserve, insert) or the leader's (tree state, heads)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def reserve(self, count: int) -> int:
        # The counter row stays locked until commit: the next writer (any process) waits here and then
        # reserves after this batch; a rollback releases the indices with the lock.
        rows = self.conn.execute(
            "UPDATE audit_sequence SET next = next + ? WHERE id = 1 RETURNING next", (count,)
        ).fetchall()  # read to the end: SQLite finishes a RETURNING statement only then
        return int(rows[0][0]) - count

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        try:
            self.conn.executemany(
                "INSERT INTO audit_entries (seq, kind, time, request_id, principal, model, leaf, leaf_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.seq, r.kind, r.time, r.request_id, r.principal, r.model, r.leaf, r.leaf_hash)
                    for r in rows
                ],
            )
        except ConstraintViolation as exc:
            first = rows[0].seq if rows else 0
            raise IntegrityError(
                f"audit entries {first}..{first + len(rows) - 1} were reserved from the log's counter but"
                f" one of them already exists: a row was written outside Bastion ({exc})",
                hint="Run 'bastion audit verify' (it names rows beyond the counter). Stop any Bastion of a"
                " version before the multi-writer log: every process must reserve from the counter.",
            ) from exc

    def insert_bodies(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        self.conn.executemany("INSERT INTO audit_bodies (seq, part, data) VALUES (?, ?, ?)", rows)

    def tree_state(self) -> tuple[int, bytes]:
        # In the leader's transaction on PostgreSQL this locks the tree row until commit.
        lock = self.conn.for_update()  # a constant per dialect, never input
        row = self.conn.execute("SELECT size, frontier FROM audit_tree WHERE id = 1" + lock).fetchone()  # noqa: S608
        return int(row[0]), bytes(row[1])

    def set_tree_state(self, size: int, frontier: bytes) -> None:
        self.conn.execute("UPDATE audit_tree SET size = ?, frontier = ? WHERE id = 1", (size, frontier))

    def latest_head(self) -> SignedTreeHead | None:
        return _latest_head(self.conn)

    def insert_head(self, head: SignedTreeHead) -> None:
        self.conn.execute(
            "INSERT INTO audit_heads (origin, tree_size, root, timestamp_ms, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (head.origin, head.tree_size, head.root, head.timestamp_ms, head.key_id, head.signature),
        )


def _latest_head(conn: Connection) -> SignedTreeHead | None:
    row = conn.execute(
        "SELECT origin, tree_size, root, timestamp_ms, key_id, signature"
        " FROM audit_heads ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return _head(row) if row else None


class LeaderSession:
    """This process's leadership of the log: what only the leader reads and writes, on the connection
    that holds the leadership lock (PostgreSQL: that very session, so a leader that lost its session
    cannot commit; SQLite: the store's connection, the ``flock`` dies only with the process)."""

    def __init__(self, lock: SessionLock) -> None:
        self._lock = lock
        self._conn = lock.connection

    def state(self) -> tuple[int, bytes, int, int]:
        """Integrated size, its frontier, the size a head is wanted for, and how many are sequenced."""
        row = self._conn.execute(
            "SELECT t.size, t.frontier, t.wanted, s.next FROM audit_tree t, audit_sequence s"
            " WHERE t.id = 1 AND s.id = 1"
        ).fetchone()
        return int(row[0]), bytes(row[1]), int(row[2]), int(row[3])

    def pending(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        """``(seq, leaf, leaf_hash)`` of the sequenced entries ``start <= seq < stop``, in order."""
        rows = self._conn.execute(
            "SELECT seq, leaf, leaf_hash FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, stop),
        ).fetchall()
        return [(int(r[0]), _blob(r[1]), _blob(r[2])) for r in rows]

    def latest_head(self) -> SignedTreeHead | None:
        """The newest signed head."""
        return _latest_head(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        """The leader's write transaction (tree state and heads)."""
        with self._conn.transaction():
            yield _Txn(self._conn)

    def alive(self) -> bool:
        """False once leadership is known lost."""
        return self._lock.alive()

    def release(self) -> None:
        """Step down (another process may take over at once)."""
        self._lock.release()


class DbStore:
    """:class:`bastion.audit.store.Store` on a SQLite file or a PostgreSQL database. Thread-safe."""

    def __init__(self, target: Target) -> None:
        self.path = target
        self._conn = _connect(target)
        self._lock = threading.RLock()  # serialise this process's use (one SQLite connection)
        self._scan_sql = _SCAN_SQL_PG if self._conn.dialect == "postgresql" else _SCAN_SQL

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        """A writer's transaction; writers of every process queue on the counter row it reserves from
        (SQLite: on the file's write lock)."""
        with self._lock, self._conn.transaction():
            yield _Txn(self._conn)

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM audit_meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set_meta_once(self, key: str, value: str) -> str:
        with self.transaction() as tx:
            # ON CONFLICT: two processes creating the log at once both get the first one's value.
            tx.conn.execute(
                "INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value)
            )
            row = tx.conn.execute("SELECT value FROM audit_meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def tree_state(self) -> tuple[int, bytes]:
        with self._lock:
            return _Txn(self._conn).tree_state()

    def sequenced(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT next FROM audit_sequence WHERE id = 1").fetchone()[0])

    def request_head(self, size: int) -> None:
        with self.transaction() as tx:
            tx.conn.execute("UPDATE audit_tree SET wanted = ? WHERE id = 1 AND wanted < ?", (size, size))

    def leader(self) -> str | None:
        """``pid@host`` of the process leading the log now (None: nobody holds the leadership)."""
        return self._conn.session_lock_holder(LEADER_LOCK)

    def try_lead(self) -> LeaderSession | None:
        lock = self._conn.try_session_lock(LEADER_LOCK)
        return LeaderSession(lock) if lock is not None else None

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM audit_entries").fetchone()[0])

    def scan(self, start: int = 0, batch: int = 65536) -> Iterator[list[ScanRow]]:
        # Keyset pagination (seq > last) so each batch is an index range read, and the lock is not held
        # between batches. The index check runs inside SQLite (json_quote is injective on strings, so a
        # match proves the columns equal the leaf's fields); reading five text columns into Python per
        # row instead would double the cost of verify.
        last = start - 1
        while True:
            with self._lock:
                rows = self._conn.execute(self._scan_sql, (LEAF_VERSION, last, batch)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def leaves_between(self, since: str | None, until: str | None) -> Iterator[list[tuple[int, bytes]]]:
        # Bounds only when given: an open end as a sentinel string ('\uffff') sorts differently under
        # a PostgreSQL collation than under SQLite's byte order.
        sql = "SELECT seq, leaf FROM audit_entries WHERE seq > ?"
        bounds: list[str] = []
        if since is not None:
            sql, bounds = sql + " AND time >= ?", [*bounds, since]
        if until is not None:
            sql, bounds = sql + " AND time < ?", [*bounds, until]
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(sql + " ORDER BY seq LIMIT 4096", (last, *bounds)).fetchall()
            if not rows:
                return
            yield [(int(r[0]), _blob(r[1])) for r in rows]
            last = rows[-1][0]

    def leaf_hashes(self, stop: int) -> list[bytes]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, leaf_hash FROM audit_entries WHERE seq < ? ORDER BY seq", (stop,)
            ).fetchall()
        if len(rows) != stop or (rows and rows[-1][0] != stop - 1):
            raise IntegrityError(
                f"the audit log has {len(rows)} of the first {stop} entries",
                hint="Run 'bastion audit verify' to find which entries are missing.",
            )
        return [_blob(r[1]) for r in rows]

    def entry(self, seq: int) -> EntryRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, kind, time, request_id, principal, model, leaf, leaf_hash"
                " FROM audit_entries WHERE seq = ?",
                (seq,),
            ).fetchone()
        return _entry(row) if row else None

    def bodies(self, seq: int) -> dict[str, bytes]:
        with self._lock:
            rows = self._conn.execute("SELECT part, data FROM audit_bodies WHERE seq = ?", (seq,)).fetchall()
        return {str(p): bytes(d) for p, d in rows}

    def latest_head(self) -> SignedTreeHead | None:
        with self._lock:
            return _latest_head(self._conn)

    def heads(self) -> list[SignedTreeHead]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT origin, tree_size, root, timestamp_ms, key_id, signature FROM audit_heads ORDER BY id"
            ).fetchall()
        return [_head(r) for r in rows]

    def find(self, filters: Filters, limit: int) -> list[EntryRow]:
        where, args = [], []
        for col in ("kind", "principal", "model", "request_id"):
            value = getattr(filters, col)
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if filters.since is not None:
            where.append("time >= ?")
            args.append(filters.since)
        if filters.until is not None:
            where.append("time < ?")
            args.append(filters.until)
        sql = "SELECT seq, kind, time, request_id, principal, model, leaf, leaf_hash FROM audit_entries"
        if where:  # column names come from the fixed tuple above; every value is a bound parameter
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [_entry(r) for r in rows]

    def prune_bodies(self, before: str) -> int:
        with self.transaction() as tx:
            cur = tx.conn.execute(
                "DELETE FROM audit_bodies WHERE seq IN (SELECT seq FROM audit_entries WHERE time < ?)",
                (before,),
            )
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def log_exists(target: Target) -> bool:
    """Whether a log was created at ``target`` (a SQLite file exists; PostgreSQL has its log id)."""
    if isinstance(target, PostgresTarget):
        store = DbStore(target)
        try:
            return store.meta("log_id") is not None
        finally:
            store.close()
    return target.exists()


def open_store(target: Target) -> DbStore:
    """Open (creating if needed) the audit database at ``target`` (a SQLite file or PostgreSQL)."""
    try:
        return DbStore(target)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the audit database {target}: {exc}") from exc
