"""The local store of reference fingerprints (SQLite, one row per named base model)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.bundled import data_home
from bastion.errors import NotFound, UsageError, did_you_mean
from bastion.lineage.fingerprint import Fingerprint
from bastion.lineage.shipped import load as load_shipped
from bastion.lineage.shipped import manifest as shipped_manifest
from bastion.lineage.shipped import shipped_dir
from bastion.store import Connection, Migrations
from bastion.store.sqlite import open_sqlite

migrations = Migrations("lineage")


@migrations
def m001_references(conn: Connection) -> None:
    """Reference fingerprints by name; the fingerprint JSON is stored whole."""
    conn.execute(
        "CREATE TABLE lineage_references ("
        " name TEXT PRIMARY KEY, source TEXT NOT NULL, sha256 TEXT NOT NULL, family TEXT NOT NULL,"
        " fingerprint BLOB NOT NULL,"
        " added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
    )


@dataclass(frozen=True)
class ReferenceInfo:
    """A stored reference, without its fingerprint."""

    name: str
    source: str
    sha256: str
    family: str
    added_at: str

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return dict(self.__dict__)


def default_path() -> Path:
    """Where references live unless told otherwise: ``$BASTION_HOME/lineage.db``."""
    return data_home() / "lineage.db"


class ReferenceStore:
    """Named reference fingerprints that ``check`` compares a model against.

    The organisation's own references live in SQLite; ``shipped`` adds the bundled models' references
    built at install time (read-only, checked against their manifest; an own reference of the same
    name wins). :meth:`default` is the store every command uses.
    """

    def __init__(self, path: Path | None = None, shipped: Path | None = None) -> None:
        self.path = path or default_path()
        self.conn = open_sqlite(self.path, migrations)
        self.shipped = shipped
        self._shipped = shipped_manifest(shipped) if shipped is not None else {}

    @classmethod
    def default(cls) -> ReferenceStore:
        """``$BASTION_HOME/lineage.db`` plus the references shipped for the bundled models."""
        return cls(default_path(), shipped=shipped_dir())

    def add(self, name: str, fp: Fingerprint, replace: bool = False) -> ReferenceInfo:
        """Store ``fp`` under ``name`` (one transaction: the row is written whole or not at all)."""
        if not name or len(name) > 200 or any(c.isspace() for c in name):
            raise UsageError(
                f"reference name {name!r} is not usable", hint="Use a short name without spaces."
            )
        blob = orjson.dumps(fp.to_json())
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self.conn:
                self.conn.execute(
                    f"{verb} INTO lineage_references (name, source, sha256, family, fingerprint)"  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, fp.source, fp.sha256, fp.arch.family, blob),
                )
        except sqlite3.IntegrityError as exc:
            raise UsageError(
                f"a reference named {name!r} already exists", hint="Pass --replace to overwrite it."
            ) from exc
        return self.info(name)

    def _own(self, name: str) -> ReferenceInfo | None:
        row = self.conn.execute(
            "SELECT name, source, sha256, family, added_at FROM lineage_references WHERE name = ?", (name,)
        ).fetchone()
        return ReferenceInfo(*row) if row else None

    def _shipped_info(self, name: str) -> ReferenceInfo:
        e = self._shipped[name]
        return ReferenceInfo(
            name, str(e.get("source")), str(e.get("weights")), str(e.get("family")), "shipped"
        )

    def info(self, name: str) -> ReferenceInfo:
        """Metadata of one reference."""
        own = self._own(name)
        if own is not None:
            return own
        if name in self._shipped:
            return self._shipped_info(name)
        raise NotFound(
            f"no lineage reference named {name!r}",
            hint=did_you_mean(
                name,
                (r.name for r in self.list()),
                "See 'bastion lineage references'; add one with 'bastion lineage add-reference'.",
            ),
        )

    def get(self, name: str) -> Fingerprint:
        """The fingerprint stored under ``name``."""
        if self._own(name) is None and name in self._shipped and self.shipped is not None:
            return load_shipped(self.shipped, name, self._shipped[name])
        self.info(name)
        (blob,) = self.conn.execute(
            "SELECT fingerprint FROM lineage_references WHERE name = ?", (name,)
        ).fetchone()
        return Fingerprint.from_json(orjson.loads(blob), f"reference {name!r}")

    def list(self) -> list[ReferenceInfo]:
        """Every reference (own and shipped), by name."""
        rows = self.conn.execute(
            "SELECT name, source, sha256, family, added_at FROM lineage_references ORDER BY name"
        ).fetchall()
        own = {r[0]: ReferenceInfo(*r) for r in rows}
        shipped = {n: self._shipped_info(n) for n in self._shipped if n not in own}
        return sorted([*own.values(), *shipped.values()], key=lambda r: r.name)

    def close(self) -> None:
        """Close the database."""
        self.conn.close()
