"""``serve --workers N``: several real gateway processes on one port, sharing only the store.

One gateway with two workers serving the bundled SmolLM2 is started for the module. The tests kill a
worker with SIGKILL (the parent starts another), reload the policy through one worker (every worker
applies it), check that every answered request is in the one audit log exactly once, and that a quota
holds for the workers together (they share it through the store).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from bastion.store import Target
from tests.conftest import postgres_target, raw_sql
from tests.serve.conftest import serving

ASK = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
       "temperature": 0}
ALLOW_ALL = 'permit (principal, action, resource);\n'
DENY_ALL = 'forbid (principal, action, resource);\npermit (principal, action, resource);\n'


@dataclass(frozen=True)
class Served:
    base: str
    home: Path
    key: str
    policy: Path
    #: a key in group "limited" (3 requests a minute, for every worker together)
    limited: str
    store: Target

    @property
    def parent(self) -> int:
        return int((self.home / "serve.pid").read_text().strip())

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.parent}/task/{self.parent}/children").read_text().split()
        return sorted(int(pid) for pid in children)

    def chat(self) -> httpx.Response:
        return httpx.post(self.base + "/v1/chat/completions", json=ASK, timeout=120,
                          headers={"Authorization": f"Bearer {self.key}"})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Served]:
    """Two workers on the SQLite files, then on one PostgreSQL database (keys, registry, audit log)."""
    home = tmp_path_factory.mktemp("workers")
    policy = home / "access.cedar"
    policy.write_text(ALLOW_ALL, encoding="utf-8")
    target: Target = home / "bastion.db"
    if request.param == "postgresql":
        target = postgres_target(request.getfixturevalue("postgres"), pool_size=4)
    store = KeyStore(target)
    key = store.create("alice", ["*"]).key
    limited = store.create("bob", ["*"], groups=["limited"]).key
    store.close()
    config = f"""
[policy]
access = "{policy}"

[quotas]
enabled = true

[quotas.groups.limited]
rpm = 3

[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
"""
    old = os.environ.get("BASTION_KEY_HOME")
    os.environ["BASTION_KEY_HOME"] = f"{home}-keys"  # where serving() keeps the audit keys
    try:
        with serving(home, config, {"smollm2": "bundled:smollm2"}, server="workers = 2", store=target) as base:
            served = Served(base, home, key, policy, limited, target)
            _wait_for_workers(served, 2)
            yield served
    finally:
        if old is None:
            os.environ.pop("BASTION_KEY_HOME", None)
        else:
            os.environ["BASTION_KEY_HOME"] = old


def _wait_for_workers(served: Served, count: int, timeout: float = 180.0) -> list[int]:
    """Until ``count`` workers exist. (A worker accepts connections only once its models are loaded:
    uvicorn runs the lifespan start-up before it listens, so a loading worker is never sent a request.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = served.workers()
        if len(pids) == count:
            return pids
        time.sleep(0.3)
    raise AssertionError(f"expected {count} workers, have {served.workers()}")


def _bastion(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(served.home), "BASTION_KEY_HOME": f"{served.home}-keys"}
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args, "--config",
                           str(served.home / "bastion.toml")], env=env, capture_output=True, text=True, timeout=120)


def _audited(served: Served) -> list[str]:
    doc = json.loads(_bastion(served, "audit", "search", "--kind", "request", "--limit", "1000", "--json").stdout)
    return [str(e["request_id"]) for e in (doc["entries"] if isinstance(doc, dict) else doc)]


def test_two_workers_answer_on_one_port_and_audit_once_each(served: Served) -> None:
    ids = []
    for _ in range(8):
        reply = served.chat()
        assert reply.status_code == 200, reply.text
        ids.append(reply.headers["x-request-id"])
    assert len(served.workers()) == 2
    audited = _audited(served)
    for rid in ids:
        assert audited.count(rid) == 1, rid
    verify = _bastion(served, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(served: Served) -> None:
    before = served.workers()
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        now = served.workers()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"worker {before[0]} was not replaced: {served.workers()}")
    for _ in range(6):  # the survivor answers meanwhile; the replacement joins once it has loaded
        assert served.chat().status_code == 200


def test_a_policy_reload_through_one_worker_reaches_every_worker(served: Served) -> None:
    served.policy.write_text(DENY_ALL, encoding="utf-8")
    try:
        outcome = httpx.post(served.base + "/admin/reload", timeout=120).json()
        # SQLite: the parent passes SIGHUP on; PostgreSQL: the other worker hears it through the database
        assert (outcome["workers_signalled"], outcome["replicas_notified"]) in ((True, False), (False, True))
        time.sleep(2)  # SIGHUP travels parent -> workers (or NOTIFY to the other); each re-reads the file
        statuses = {served.chat().status_code for _ in range(10)}  # new connections: either worker
        assert statuses == {403}, statuses
    finally:
        served.policy.write_text(ALLOW_ALL, encoding="utf-8")
        os.kill(served.parent, signal.SIGHUP)
        time.sleep(2)
    assert served.chat().status_code == 200


def test_a_quota_holds_for_the_workers_together(served: Served) -> None:
    # Eight requests at once from a key whose group may make 3 a minute: the kernel spreads them over
    # both workers, and still exactly 3 are admitted (each worker alone would have admitted 3).
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {served.limited}"}) as c:
            return await asyncio.gather(*(c.post(served.base + "/v1/chat/completions", json=ASK)
                                          for _ in range(8)))

    replies = asyncio.run(burst())
    assert sorted(r.status_code for r in replies) == [200] * 3 + [429] * 5, [r.text for r in replies]
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in replies if r.status_code == 429)
    owners = raw_sql(served.store, "SELECT count(*) FROM quota_owner WHERE expires > ?", (time.time(),))
    assert owners[0][0] >= 2  # every worker holds a lease on the one shared store
