"""The local store of reference fingerprints (SQLite, one row per named base model)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.bundled import data_home
from bastion.errors import NotFound, UsageError
from bastion.lineage.fingerprint import Fingerprint
from bastion.store.sqlite import Migrations, open_database

migrations = Migrations("lineage")


@migrations
def m001_references(conn: sqlite3.Connection) -> None:
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
    """Named reference fingerprints that ``check`` compares a model against."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.conn = open_database(self.path, migrations)

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

    def info(self, name: str) -> ReferenceInfo:
        """Metadata of one reference."""
        row = self.conn.execute(
            "SELECT name, source, sha256, family, added_at FROM lineage_references WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(
                f"no lineage reference named {name!r}",
                hint="See 'bastion lineage references'; add one with 'bastion lineage add-reference'.",
            )
        return ReferenceInfo(*row)

    def get(self, name: str) -> Fingerprint:
        """The fingerprint stored under ``name``."""
        self.info(name)
        (blob,) = self.conn.execute(
            "SELECT fingerprint FROM lineage_references WHERE name = ?", (name,)
        ).fetchone()
        return Fingerprint.from_json(orjson.loads(blob), f"reference {name!r}")

    def list(self) -> list[ReferenceInfo]:
        """Every reference, by name."""
        rows = self.conn.execute(
            "SELECT name, source, sha256, family, added_at FROM lineage_references ORDER BY name"
        ).fetchall()
        return [ReferenceInfo(*r) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self.conn.close()
