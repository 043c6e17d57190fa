"""``kill -9`` of one of three replicas on PostgreSQL under load: nothing answered is lost or doubled.

Three ``bastion serve`` replicas share one PostgreSQL (keys, registry, audit log) and proxy a model to a
real streaming upstream on 127.0.0.1 (tests/serve/sse_upstream.py). 32 concurrent clients per replica
send streaming and non-streaming requests; one replica is killed with SIGKILL mid-load (no shutdown, no
final tree head, requests in flight). Every request that got a complete response must be in the one
audit log exactly once, no request may be logged twice, the log must verify, and the surviving
replicas must keep answering. The victim is the replica leading the audit log (the one that integrates
entries and signs tree heads): a survivor must take the lead and sign the next head.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

from tests import pg_server
from tests.conftest import postgres_target, raw_sql
from tests.serve.load import Outcome, load
from tests.serve.replicas import Replicas, replicas
from tests.serve.sse_upstream import model_table, sse_upstream

PER_REPLICA = 32
LOAD_BEFORE_S, LOAD_AFTER_S = 3.0, 3.0


def leader(running: Replicas, among: set[int], timeout: float = 30) -> int:
    """The replica of ``among`` that leads the audit log, as ``bastion audit status`` names it (pid@host
    of the session holding the lock); waits until one of them does."""
    pids = {running.procs[i].pid: i for i in among}
    deadline = time.monotonic() + timeout
    while True:
        status = running.bastion("audit", "status", "--json", i=min(among))
        assert status.returncode == 0, status.stdout + status.stderr
        lead = json.loads(status.stdout)["leader"]
        if lead and int(lead.split("@")[0]) in pids:
            return pids[int(lead.split("@")[0])]
        assert time.monotonic() < deadline, f"none of the replicas {sorted(among)} leads in {timeout} s: {lead}"
        time.sleep(0.5)


def _load_and_kill(running: Replicas, victim: int) -> tuple[list[Outcome], float, float]:
    """Load every replica, SIGKILL ``victim`` after LOAD_BEFORE_S, go on LOAD_AFTER_S; (outcomes, kill
    time on the monotonic clock, kill time on the wall clock)."""
    killed_at: list[float] = []

    async def run() -> list[Outcome]:
        until = asyncio.Event()

        async def kill_then_stop() -> None:
            await asyncio.sleep(LOAD_BEFORE_S)
            running.procs[victim].send_signal(signal.SIGKILL)
            killed_at.extend((time.monotonic(), time.time()))
            await asyncio.sleep(LOAD_AFTER_S)
            until.set()

        # every other request streams: both ways of answering are cut by the kill
        outcomes, _ = await asyncio.gather(
            load(running.bases, running.headers, PER_REPLICA * len(running.bases), until, stream_every=2),
            kill_then_stop())
        return outcomes

    outcomes = asyncio.run(run())
    running.procs[victim].wait(timeout=30)
    return outcomes, killed_at[0], killed_at[1]


def test_kill_9_of_a_replica_under_load_loses_and_doubles_nothing(
    tmp_path: Path, postgres: pg_server.Server
) -> None:
    target = postgres_target(postgres, pool_size=4)
    with sse_upstream(chunks=4, gap_s=0.01) as upstream, replicas(
        tmp_path, store=target, models=model_table(upstream.url()), admit={}
    ) as running:
        victim = leader(running, {0, 1, 2})
        outcomes, killed_at, killed_wall = _load_and_kill(running, victim)
        answered = [o for o in outcomes if o.complete]
        survivors = {0, 1, 2} - {victim}
        after = [o for o in answered if o.started > killed_at + 0.5]
        # the survivors keep answering, streams and not, and took over the dead replica's clients
        assert {o.replica for o in after} == survivors, Counter(o.replica for o in after)
        assert {o.stream for o in after} == {True, False}
        assert len(after) > PER_REPLICA * 2
        # nothing but the kill failed: every incomplete request was one the victim held or was sent
        failed = [o for o in outcomes if not o.complete]
        assert all(o.replica == victim for o in failed), [o for o in failed if o.replica != victim][:3]
        assert any(o.replica == victim for o in answered)  # the victim answered before dying

        # a survivor took the lead and signs: it signed heads after the kill, and the next head (asked
        # for now; the CLI cannot lead while a replica does) covers every entry, those after the kill too
        successor = leader(running, survivors)
        signed = running.bastion("audit", "sign", "--json", i=successor)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        ((entries,),) = raw_sql(target, "SELECT count(*) FROM audit_entries")
        assert json.loads(signed.stdout)["head"]["tree_size"] == entries
        ((after_kill,),) = raw_sql(target, "SELECT count(*) FROM audit_heads WHERE timestamp_ms > ?",
                                   (int(killed_wall * 1000),))
        assert after_kill >= 1

        logged = Counter(running.audited())
        doubled = [rid for rid, n in logged.items() if n > 1]
        assert not doubled, f"{len(doubled)} requests logged more than once: {doubled[:3]}"
        missing = [o.request_id for o in answered if o.request_id not in logged]
        assert not missing, f"{len(missing)} of {len(answered)} answered requests missing from the log"
        verify = running.bastion("audit", "verify", "--json", i=successor)
        assert verify.returncode == 0, verify.stdout + verify.stderr
