"""PostgreSQL specifics: clear errors naming the URL (password redacted), a bounded pool, redaction."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bastion.errors import StoreUnavailable
from bastion.keys import KeyStore
from bastion.store import PostgresTarget, close_pools, open_database, redact
from tests import pg_server
from tests.conftest import postgres_target, raw_sql


def test_redact_hides_the_password_in_both_url_forms() -> None:
    assert redact("postgresql://u:hunter2@db:5432/b") == "postgresql://u:***@db:5432/b"
    assert redact("postgresql://db/b?password=hunter2&sslmode=require") == (
        "postgresql://db/b?password=***&sslmode=require")
    assert redact("postgresql:///b?host=/run/postgresql") == "postgresql:///b?host=/run/postgresql"


@pytest.mark.parametrize(
    ("case", "needle", "fix"),
    [
        ("password", "refused the credentials", "Check the user and password"),
        ("database", 'database "nope" does not exist', "createdb"),
        ("unreachable", "cannot reach PostgreSQL", "pg_isready"),
    ],
)
def test_connection_problems_name_the_url_the_problem_and_the_fix(
    postgres: pg_server.Server, case: str, needle: str, fix: str
) -> None:
    url = {
        "password": postgres.tcp_url(password="wrong-password"),
        "database": postgres.tcp_url(database="nope"),
        "unreachable": "postgresql://bastion:wrong-password@127.0.0.1:1/bastion",
    }[case]
    with pytest.raises(StoreUnavailable) as err:
        KeyStore(PostgresTarget(url))
    assert needle in err.value.message and fix in err.value.hint
    assert "127.0.0.1" in err.value.message and "bastion:***@" in err.value.message
    assert "wrong-password" not in err.value.message + err.value.hint
    assert err.value.exit_code == 16


def test_the_cli_exits_16_with_the_redacted_url(postgres: pg_server.Server, tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text(f'[store]\nurl = "{postgres.tcp_url(password="wrong-password")}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "db", "status", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 16, run.stdout + run.stderr
    assert "refused the credentials" in run.stderr and "wrong-password" not in run.stderr
    assert "Traceback" not in run.stderr


def test_a_password_url_over_tcp_works(postgres: pg_server.Server) -> None:
    postgres.execute("CREATE DATABASE over_tcp")
    store = KeyStore(PostgresTarget(postgres.tcp_url(database="over_tcp")))
    new = store.create("tcp", ["*"])
    assert store.authenticate(new.key).name == "tcp"
    store.close()


def test_connections_per_process_are_bounded_by_pool_size(postgres: pg_server.Server) -> None:
    target = postgres_target(postgres, pool_size=3)
    conns = [open_database(target) for _ in range(4)]  # four stores, one pool
    running: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            rows = raw_sql(target, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(0.3)'"
                           " AND state = 'active'")
            running.append(int(rows[0][0]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=conns[i % 4].execute, args=("SELECT pg_sleep(0.3)",)) for i in range(12)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    watcher.join()
    assert max(running) == 3  # twelve callers, three server connections at a time
    for c in conns:
        c.close()
    close_pools(target.url)
