"""Migrations on both backends: applied once, in order, all or nothing; the same definition for both."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.store import Connection, ConstraintViolation, Migrations, PostgresTarget, Target, open_database
from tests.conftest import raw_sql


def test_migrations_apply_once_in_order_and_upgrade_an_older_database(store_target: Target) -> None:
    v1 = Migrations("demo")

    @v1
    def m001(conn: Connection) -> None:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, blob BLOB, score REAL)")

    open_database(store_target, v1).close()

    v2 = Migrations("demo")
    v2(m001)

    @v2
    def m002(conn: Connection) -> None:
        conn.execute("ALTER TABLE t ADD COLUMN b TEXT")

    conn = open_database(store_target, v2)
    # 2**40 needs a 64-bit INTEGER; 0.1 survives as a double; the id comes back from RETURNING
    row = conn.execute(
        "INSERT INTO t (a, b, blob, score) VALUES (?, 'x', ?, ?) RETURNING id", (2**40, b"\x00\xff", 0.1)
    ).fetchone()
    assert row[0] == 1
    assert conn.execute("SELECT a, blob, score FROM t").fetchall() == [(2**40, b"\x00\xff", 0.1)]
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["m001", "m002"]
    assert v2.apply(conn) == []
    status = v2.status(conn)
    assert (status.applied, status.pending, status.unknown) == (("m001", "m002"), (), ())
    assert v1.status(conn).unknown == ("m002",)  # an older Bastion sees a newer schema's step
    conn.close()


def test_failed_migration_leaves_nothing_half_applied(store_target: Target) -> None:
    bad = Migrations("bad")

    @bad
    def m001(conn: Connection) -> None:
        conn.execute("CREATE TABLE t (a INTEGER)")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(Exception, match="syntax error"):
        open_database(store_target, bad)
    probe = Migrations("probe")
    conn = open_database(store_target, probe)
    assert bad.status(conn).pending == ("m001",)
    if isinstance(store_target, PostgresTarget):
        assert raw_sql(store_target, "SELECT to_regclass('t')") == [(None,)]
    else:
        assert raw_sql(store_target, "SELECT name FROM sqlite_master WHERE name = 't'") == []
    conn.close()


def test_processes_opening_a_new_database_at_once_apply_each_step_once(store_target: Target) -> None:
    m = Migrations("race")

    @m
    def m001(conn: Connection) -> None:
        conn.execute("CREATE TABLE counted (a INTEGER)")

    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_database(store_target, m).close()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert raw_sql(store_target, "SELECT count(*) FROM _migrations WHERE component = 'race'") == [(1,)]


def test_constraint_violations_are_one_exception_on_both_backends(store_target: Target) -> None:
    m = Migrations("unique")

    @m
    def m001(conn: Connection) -> None:
        conn.execute("CREATE TABLE u (name TEXT PRIMARY KEY)")

    conn = open_database(store_target, m)
    conn.execute("INSERT INTO u VALUES (?)", ("a",))
    with pytest.raises(ConstraintViolation), conn.transaction():
        conn.execute("INSERT INTO u VALUES (?)", ("b",))
        conn.execute("INSERT INTO u VALUES (?)", ("a",))
    assert [r[0] for r in conn.execute("SELECT name FROM u ORDER BY name")] == ["a"]  # b rolled back
    conn.close()


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "z.db"
    p.write_bytes(b"not a sqlite file at all" * 100)
    with pytest.raises(ConfigError, match="not a usable Bastion database"):
        open_database(p)
