"""Real processes: parallel writers keep one consistent tree with one leader at a time; a writer killed
with SIGKILL loses nothing it had acknowledged; when the leader is killed, another takes over and signs
a head over every entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bastion.audit import AuditLog, open_store
from bastion.audit.verify import verify_log
from bastion.store import PostgresTarget, Target

from .conftest import Keys

WRITER = Path(__file__).with_name("writer_process.py")


def start_writer(
    db: Target, keys: Keys, tag: str, count: int, clients: int, interval: float = 0.2
) -> subprocess.Popen[str]:
    where = db.url if isinstance(db, PostgresTarget) else str(db)
    return subprocess.Popen(
        [sys.executable, str(WRITER), where, str(keys.files.signing_key), tag, str(count), str(clients),
         str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def acknowledged(output: str) -> dict[int, str]:
    pairs = (line.split() for line in output.splitlines() if line.strip())
    return {int(p[0]): p[1] for p in pairs if len(p) == 2 and p[0].isdigit()}  # a kill may cut a line


def leaderships(output: str) -> list[tuple[int, int | None]]:
    """The ``[start, end)`` intervals (monotonic ns) in which a writer led; end None: it never let go."""
    spans: list[tuple[int, int | None]] = []
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == "LEAD":
            if parts[1] == "1":
                spans.append((int(parts[2]), None))
            else:
                spans[-1] = (spans[-1][0], int(parts[2]))
    return spans


def assert_one_leader_at_a_time(spans: dict[str, list[tuple[int, int | None]]]) -> None:
    flat = sorted((start, end or 2**63, tag) for tag, mine in spans.items() for start, end in mine)
    for (_, end, tag), (start, _, other) in zip(flat, flat[1:], strict=False):
        assert end <= start, f"{tag} and {other} led at the same time"


def create_log(db: Target, keys: Keys) -> None:
    # Create the schema once before the writers start (concurrent first-time migrations would race).
    AuditLog(open_store(db), signer=keys.signer).close()


def test_parallel_writer_processes_append_exactly_once_under_one_leader(store_target: Target, keys: Keys) -> None:
    db = store_target
    create_log(db, keys)
    procs = {tag: start_writer(db, keys, tag, 400, 20) for tag in ("a", "b", "c")}
    acks: dict[int, str] = {}
    spans = {}
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        mine = acknowledged(out)
        assert len(mine) == 400 and {r.split("-")[0] for r in mine.values()} == {tag}
        assert not acks.keys() & mine.keys(), "two processes were given the same leaf index"
        acks.update(mine)
        spans[tag] = leaderships(out)
    assert sorted(acks) == list(range(1200)), "indices are not exactly 0..1199"
    assert sum(len(s) for s in spans.values()) >= 1
    assert_one_leader_at_a_time(spans)
    store = open_store(db)
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert report.entries == 1200 and report.signed_size == 1200 and report.integrated == 1200
    for seq, rid in acks.items():
        entry = store.entry(seq)
        assert entry is not None and entry.request_id == rid
    assert report.heads >= 3  # heads along the way (every 500 entries or 0.2 s), not only at the end


class Reader:
    """Collects a process's stdout lines in a thread (so several processes can be watched at once)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def leads(self) -> bool:
        spans = leaderships(self.text())
        return bool(spans) and spans[-1][1] is None

    def finish(self, timeout: float = 60) -> str:
        self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        return self.text()


def wait_until(cond: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_kill_9_of_the_leader_under_load_another_takes_over_and_signs_everything(
    store_target: Target, keys: Keys
) -> None:
    db = store_target
    create_log(db, keys)
    writers = {tag: Reader(start_writer(db, keys, tag, 0, 16, interval=0.5)) for tag in ("a", "b", "c")}
    assert wait_until(lambda: any(w.leads() for w in writers.values()), 30), "no writer became leader"
    assert wait_until(lambda: sum(len(acknowledged(w.text())) for w in writers.values()) >= 600, 60)
    tag, leader = next((t, w) for t, w in writers.items() if w.leads())
    killed_at = time.monotonic_ns()
    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.finish()
    assert leader.proc.returncode == -signal.SIGKILL
    survivors = {t: w for t, w in writers.items() if t != tag}
    assert wait_until(lambda: any(w.leads() for w in survivors.values()), 30), "nobody took over"
    takeover = min(s for w in survivors.values() for s, _ in leaderships(w.text()) if s > killed_at)
    print(f"takeover {(takeover - killed_at) / 1e9:.2f} s after kill -9")
    store = open_store(db)
    at_kill = store.sequenced()
    # The new leader signs a head over everything sequenced, the dead leader's last batches included.
    assert wait_until(lambda: (h := store.latest_head()) is not None and h.tree_size >= at_kill, 30)
    for w in survivors.values():
        w.proc.send_signal(signal.SIGTERM)
    outputs = {t: w.finish() for t, w in survivors.items()}
    outputs[tag] = leader.text()
    for w in survivors.values():
        assert w.proc.returncode == 0, w.proc.stderr.read() if w.proc.stderr else ""
    acks: dict[int, str] = {}
    for out in outputs.values():
        mine = acknowledged(out)
        assert not acks.keys() & mine.keys(), "two processes were given the same leaf index"
        acks.update(mine)
    spans = {t: leaderships(o) for t, o in outputs.items()}
    spans[tag] = [(start, end or killed_at) for start, end in spans[tag]]  # it led until killed
    assert_one_leader_at_a_time(spans)
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert report.entries == store.sequenced() and report.signed_size == report.entries
    for seq, rid in acks.items():  # every acknowledged append exactly once, at the index it was given
        entry = store.entry(seq)
        assert entry is not None and entry.request_id == rid, f"acknowledged entry {seq} ({rid}) lost"
    store.close()


def test_sigkill_mid_load_loses_no_acknowledged_append(store_target: Target, keys: Keys) -> None:
    db = store_target
    create_log(db, keys)
    proc = start_writer(db, keys, "k", 0, 50)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged("".join(lines))) < 3000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-load: appends are queued and a batch is in flight
    # Read the rest through the same text stream: communicate() reads the raw pipe and would skip what
    # readline() already buffered (the start of the next line).
    rest = proc.stdout.read()
    proc.wait(timeout=30)
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
    # The log is usable after the crash: a new writer continues the same tree and signs all of it.
    log = AuditLog(open_store(db), signer=keys.signer)
    ref = log.append_admin("gateway.restarted", "os:tester")
    head = log.close()
    assert ref.seq == report.entries
    assert head is not None and head.tree_size == ref.seq + 1
    assert verify_log(open_store(db), keys.public).ok
