"""Real processes: parallel writers keep one consistent tree; a writer killed with SIGKILL loses nothing
it had acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bastion.audit import AuditLog, open_store
from bastion.audit.verify import verify_log
from bastion.store import PostgresTarget, Target

from .conftest import Keys

WRITER = Path(__file__).with_name("writer_process.py")


def start_writer(db: Target, keys: Keys, tag: str, count: int, clients: int) -> subprocess.Popen[str]:
    where = db.url if isinstance(db, PostgresTarget) else str(db)
    return subprocess.Popen(
        [sys.executable, str(WRITER), where, str(keys.files.signing_key), tag, str(count), str(clients)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def acknowledged(output: str) -> dict[int, str]:
    pairs = (line.split() for line in output.splitlines() if line.strip())
    return {int(seq): rid for seq, rid in pairs}


def create_log(db: Target, keys: Keys) -> None:
    # Create the schema once before the writers start (concurrent first-time migrations would race).
    AuditLog(open_store(db), signer=keys.signer).close()


def test_parallel_writer_processes_keep_one_consistent_tree(store_target: Target, keys: Keys) -> None:
    db = store_target
    create_log(db, keys)
    procs = {tag: start_writer(db, keys, tag, 400, 20) for tag in ("a", "b", "c")}
    acks: dict[int, str] = {}
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        mine = acknowledged(out)
        assert len(mine) == 400 and {r.split("-")[0] for r in mine.values()} == {tag}
        assert not acks.keys() & mine.keys(), "two processes were given the same leaf index"
        acks.update(mine)
    store = open_store(db)
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert report.entries == 1200 and report.signed_size == 1200
    for seq, rid in acks.items():
        entry = store.entry(seq)
        assert entry is not None and entry.request_id == rid
    # Heads were signed by all three processes, interleaved, and every pair is consistent (checked above).
    assert report.heads >= 3


def test_sigkill_mid_load_loses_no_acknowledged_append(store_target: Target, keys: Keys) -> None:
    db = store_target
    create_log(db, keys)
    proc = start_writer(db, keys, "k", 0, 50)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while len(lines) < 3000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-load: appends are queued and a batch is in flight
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    acks = acknowledged("".join(lines) + rest)
    assert len(acks) >= 3000, "the writer did not get going"

    store = open_store(db)  # reopening runs SQLite's WAL recovery (PostgreSQL: nothing to recover)
    for seq, rid in acks.items():
        entry = store.entry(seq)
        assert entry is not None and entry.request_id == rid, f"acknowledged entry {seq} ({rid}) lost"
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert report.entries >= len(acks)
    store.close()
    # The log is usable after the crash: a new writer continues the same tree.
    log = AuditLog(open_store(db), signer=keys.signer)
    ref = log.append_admin("gateway.restarted", "os:tester")
    log.close()
    assert ref.seq == report.entries
    assert verify_log(open_store(db), keys.public).ok
