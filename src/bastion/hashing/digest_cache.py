"""A digest cache so re-verifying an unchanged multi-GB model costs a few ``stat`` calls.

An entry is keyed by the file's absolute path, the byte range and the algorithm, and is only used
while the file's identity is unchanged: device, inode, size, ``mtime_ns`` *and* ``ctime_ns``.
``mtime`` alone is not enough for a security tool: anyone who can write the file can also set its
mtime back with ``touch -d``/``os.utime``. ``ctime`` cannot be set from user space (it changes on
every write, ``utime`` and ``chmod``), so a file rewritten in place to the same size and mtime still
misses the cache. What remains trusted is whoever can write ``$BASTION_HOME`` or change the clock as
root; ``--no-cache`` (``use_cache=False``) re-reads every byte for an audit.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from bastion.bundled import data_home
from bastion.errors import ConfigError
from bastion.store import Connection, Migrations
from bastion.store.sqlite import open_sqlite

migrations = Migrations("digest_cache")


@migrations
def m001_digests(conn: Connection) -> None:
    """One row per (file, byte range, algorithm)."""
    conn.execute(
        "CREATE TABLE digests ("
        " path TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, algorithm TEXT NOT NULL,"
        " dev INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL,"
        " PRIMARY KEY (path, start, end, algorithm))"
    )


@dataclass(frozen=True)
class FileIdentity:
    """What must not change for a cached digest to stay valid."""

    dev: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        """The identity recorded in ``st``."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def default_path() -> Path:
    """Where the cache lives: ``$BASTION_HOME/digest-cache.db``."""
    return data_home() / "digest-cache.db"


class DigestCache:
    """SQLite-backed digests of byte ranges of files, invalidated by any change to the file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        try:
            self._conn = open_sqlite(self.path, migrations)
        except ConfigError as exc:
            raise ConfigError(
                exc.message, hint="Fix $BASTION_HOME, or hash without the cache (--no-cache)."
            ) from exc
        self._lock = threading.Lock()

    def get(self, path: Path, start: int, end: int, algorithm: str, ident: FileIdentity) -> str | None:
        """The cached hex digest of ``path[start:end]``, or None if absent or the file changed."""
        with self._lock:
            row = self._conn.execute(
                "SELECT digest FROM digests WHERE path=? AND start=? AND end=? AND algorithm=?"
                " AND dev=? AND inode=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                (
                    str(path),
                    start,
                    end,
                    algorithm,
                    ident.dev,
                    ident.inode,
                    ident.size,
                    ident.mtime_ns,
                    ident.ctime_ns,
                ),
            ).fetchone()
        return None if row is None else str(row[0])

    def put_many(self, rows: list[tuple[Path, int, int, str, FileIdentity, str]]) -> None:
        """Record digests in one transaction (all or none)."""
        if not rows:
            return
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO digests"
                " (path, start, end, algorithm, dev, inode, size, mtime_ns, ctime_ns, digest)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (str(p), s, e, a, i.dev, i.inode, i.size, i.mtime_ns, i.ctime_ns, d)
                    for p, s, e, a, i, d in rows
                ],
            )

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
