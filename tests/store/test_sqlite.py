from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.store import Migrations, open_database


def test_migrations_apply_once_in_order_and_upgrade_an_older_database(tmp_path: Path) -> None:
    v1 = Migrations("demo")

    @v1
    def m001(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (a INTEGER)")

    db = tmp_path / "x.db"
    open_database(db, v1).close()

    v2 = Migrations("demo")
    v2(m001)

    @v2
    def m002(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE t ADD COLUMN b TEXT")

    conn = open_database(db, v2)
    conn.execute("INSERT INTO t (a, b) VALUES (1, 'x')")
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["m001", "m002"]
    assert v2.apply(conn) == []


def test_failed_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    bad = Migrations("bad")

    @bad
    def m001(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (a INTEGER)")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(ConfigError):
        open_database(tmp_path / "y.db", bad)
    conn = sqlite3.connect(tmp_path / "y.db")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "z.db"
    p.write_bytes(b"not a sqlite file at all" * 100)
    with pytest.raises(ConfigError, match="not a usable Bastion database"):
        open_database(p)
