"""The audit log as the gateway writes it: 10,000 real requests, then tamper, and a SIGKILL mid-load.

The upstream is a small HTTP server on 127.0.0.1 (a stand-in for a remote model server), so the
requests are many and fast; everything between the client and the log is the real gateway.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.audit import load_public_key, open_store, public_key_path
from bastion.audit.verify import VerifyReport, verify_log
from bastion.keys import KeyStore
from tests.audit.test_tamper import rewrite_leaf
from tests.serve.conftest import free_port, stop, wait_http

N_REQUESTS = 10_000
MOCK = Path(__file__).with_name("mock_upstream.py")


@dataclass(frozen=True)
class Stack:
    home: Path
    config: Path
    base: str
    key: str
    env: dict[str, str]


def start_stack(home: Path) -> tuple[Stack, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    upstream_port, port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(MOCK), str(upstream_port)])
    config = home / "bastion.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n[audit]\nsth_every = 500\n'
        f'[[models]]\nname = "mock"\nbackend = "openai"\nurl = "http://127.0.0.1:{upstream_port}/v1"\n'
    )
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys"}
    if not (home / "audit" / "audit.db").exists():
        subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "audit", "init", "-c", str(config)],
            env=env,
            check=True,
            capture_output=True,
        )
    store = KeyStore(home / "bastion.db")
    key = store.create("load", ["mock"]).key
    store.close()
    log = (home / "serve.log").open("ab")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "serve", "-c", str(config)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", gateway, home / "serve.log")
    return Stack(home, config, base, key, env), gateway, upstream


def fire(stack: Stack, n: int, threads: int = 16, stop_at: threading.Event | None = None) -> list[str]:
    """Send ``n`` requests (mostly allowed, some denied); return the ids of complete responses."""
    done: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            for i in counter:
                if stop_at is not None and stop_at.is_set():
                    return
                key = stack.key if i % 10 else "bst_000000000000_bad"
                try:
                    r = client.post(
                        stack.base + "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {key}"},
                        json={"model": "mock", "messages": [{"role": "user", "content": f"q{i}"}]},
                    )
                except httpx.HTTPError:
                    return  # the gateway was killed
                with lock:
                    done.append(r.headers["x-request-id"])

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    return done


def verify(db: Path, home: Path) -> VerifyReport:
    store = open_store(db)
    try:
        return verify_log(store, load_public_key(public_key_path(Path(f"{home}-keys") / "audit-signing.key")))
    finally:
        store.close()


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, int]]:
    home = tmp_path_factory.mktemp("gateway-log")
    stack, gateway, upstream = start_stack(home)
    try:
        ids = fire(stack, N_REQUESTS)
    finally:
        stop(gateway)  # SIGTERM: flush and sign a final tree head
        upstream.kill()
    assert len(ids) == N_REQUESTS
    db = home / "audit" / "audit.db"
    entries = sqlite3.connect(db).execute("SELECT COUNT(*) FROM audit_entries").fetchone()[0]
    yield db, home, entries


def test_every_gateway_request_is_in_the_log_and_it_verifies(gateway_log: tuple[Path, Path, int]) -> None:
    db, home, entries = gateway_log
    assert entries >= N_REQUESTS  # plus audit.init and gateway start
    report = verify(db, home)
    assert report.ok, report.problems[:3]
    assert report.unsigned_tail == 0  # shutdown signed a head over everything


@pytest.mark.parametrize("seed", range(4))
def test_tampering_with_a_gateway_entry_is_caught_and_named(
    seed: int, gateway_log: tuple[Path, Path, int], tmp_path: Path
) -> None:
    db, home, entries = gateway_log
    copy = tmp_path / "audit.db"
    shutil.copy(db, copy)
    rng = random.Random(seed)
    seq = rng.randrange(2, entries - 1)
    field = rng.choice(
        ["principal", "model", "weights_digest", "status", "tokens_out", "decision", "request_sha256"]
    )
    conn = sqlite3.connect(copy)
    kind = conn.execute("SELECT kind FROM audit_entries WHERE seq = ?", (seq,)).fetchone()[0]
    assert kind == "request"
    rewrite_leaf(conn, seq, field, rehash=False)
    conn.commit()
    conn.close()
    report = verify(copy, home)
    assert not report.ok and report.first_bad_entry == seq


def test_deleting_or_truncating_gateway_entries_is_caught(
    gateway_log: tuple[Path, Path, int], tmp_path: Path
) -> None:
    db, home, entries = gateway_log
    for sql, expected in (
        ("DELETE FROM audit_entries WHERE seq = 4321", 4321),
        ("DELETE FROM audit_entries WHERE seq >= 9000", 9000),
    ):
        copy = tmp_path / f"audit-{expected}.db"
        shutil.copy(db, copy)
        conn = sqlite3.connect(copy)
        conn.execute(sql)
        conn.commit()
        conn.close()
        report = verify(copy, home)
        assert not report.ok and report.first_bad_entry == expected


def test_sigkill_under_load_loses_no_answered_request(tmp_path: Path) -> None:
    stack, gateway, upstream = start_stack(tmp_path)
    stop_at = threading.Event()
    answered: list[str] = []
    try:
        loader = threading.Thread(target=lambda: answered.extend(fire(stack, 50_000, 16, stop_at)))
        loader.start()
        time.sleep(3)
        gateway.send_signal(signal.SIGKILL)  # no shutdown, no final head
        gateway.wait(timeout=10)
        stop_at.set()
        loader.join(timeout=60)
    finally:
        upstream.kill()
    assert len(answered) > 100
    db = tmp_path / "audit" / "audit.db"
    conn = sqlite3.connect(db)
    logged = {r[0] for r in conn.execute("SELECT request_id FROM audit_entries WHERE request_id IS NOT NULL")}
    conn.close()
    missing = [rid for rid in answered if rid not in logged]
    assert not missing, f"{len(missing)} answered requests missing from the log"
    report = verify(db, tmp_path)
    assert report.ok, report.problems[:3]
    # the gateway comes back on the same log and keeps appending
    stack2, gateway2, upstream2 = start_stack(tmp_path)
    try:
        assert len(fire(stack2, 50)) == 50
    finally:
        stop(gateway2)
        upstream2.kill()
    assert verify(db, tmp_path).ok
