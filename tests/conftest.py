"""Suite-wide settings: offline, and every test gets its own BASTION_HOME and BASTION_KEY_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("BASTION_TEST", "1")


@pytest.fixture(autouse=True)
def _bastion_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("bastion-home")
    monkeypatch.setenv("BASTION_HOME", str(home))
    # operator keys (the audit signing key) live outside BASTION_HOME, as they do by default
    monkeypatch.setenv("BASTION_KEY_HOME", str(tmp_path_factory.mktemp("bastion-keys")))
    monkeypatch.delenv("BASTION_CONFIG", raising=False)
    return home


# -- the two store backends ------------------------------------------------------------------------

import secrets  # noqa: E402
import sqlite3  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from bastion.store import PostgresTarget, Target, close_pools  # noqa: E402
from tests import pg_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg_server.Server]:
    """A real PostgreSQL server for the whole session (initdb in a temporary directory, non-root)."""
    if pg_server.pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (make bootstrap does it)")
    server = pg_server.start()
    try:
        yield server
    finally:
        close_pools()
        server.stop()


def postgres_target(server: pg_server.Server, pool_size: int = 10) -> PostgresTarget:
    """A fresh, empty schema on ``server``: every table a test makes is its own."""
    schema = "t_" + secrets.token_hex(6)
    server.execute(f"CREATE SCHEMA {schema}")
    return PostgresTarget(server.url(schema=schema), pool_size)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """Where a store test keeps its data: a SQLite file, then a PostgreSQL schema (same tests)."""
    if request.param == "sqlite":
        yield tmp_path / "bastion.db"
        return
    target = postgres_target(request.getfixturevalue("postgres"))
    yield target
    close_pools(target.url)  # what the test left open (stores it did not close) goes back to the server


def raw_sql(target: Target, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` placeholders) on the database directly, as someone with write access would."""
    if isinstance(target, PostgresTarget):
        import psycopg

        with psycopg.connect(target.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(target) as conn:
        return conn.execute(sql, params).fetchall()


def store_toml(target: Target) -> str:
    """The ``[store]`` section of a configuration file that keeps its data at ``target``."""
    if isinstance(target, PostgresTarget):
        return f'[store]\nurl = "{target.url}"\npool_size = {target.pool_size}\n'
    return f'[store]\npath = "{target}"\n'


def store_settings(target: Target) -> dict[str, Any]:
    """The ``store`` settings (as a mapping) that keep a gateway's data at ``target``."""
    if isinstance(target, PostgresTarget):
        return {"url": target.url, "pool_size": target.pool_size}
    return {"path": str(target)}


class _PgRaw:
    """A psycopg connection that takes ``?`` placeholders, like ``sqlite3`` (for tampering tests)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s").encode(), tuple(params))

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def raw_connect(target: Target) -> Any:
    """A direct connection to ``target``'s database, bypassing Bastion (commit and close it yourself)."""
    if isinstance(target, PostgresTarget):
        return _PgRaw(target.url)
    return sqlite3.connect(target)


def copy_schema(server: pg_server.Server, source: PostgresTarget) -> PostgresTarget:
    """A new schema holding a copy of every table of ``source``'s schema (a PostgreSQL 'cp a.db b.db')."""
    import psycopg

    copy = postgres_target(server, source.pool_size)
    old, new = (t.url.rsplit("search_path%3D", 1)[1] for t in (source, copy))
    with psycopg.connect(server.url(), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (old,)).fetchall()]
        for t in tables:
            conn.execute(f"CREATE TABLE {new}.{t} (LIKE {old}.{t} INCLUDING ALL)".encode())
            conn.execute(f"INSERT INTO {new}.{t} OVERRIDING SYSTEM VALUE SELECT * FROM {old}.{t}".encode())
    return copy
