"""Quotas held by three replicas together on one PostgreSQL: zero overspend, 429s, usage = audit log.

Three real ``bastion serve`` processes share one PostgreSQL schema (keys, registry, quota counters) and
answer from a mock OpenAI-compatible upstream on 127.0.0.1 (6 tokens an answer). Requests are spread
over the replicas round-robin, many at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.keys import KeyStore
from bastion.quota import UsageStore
from bastion.quota.limiter import period_start
from bastion.store import PostgresTarget
from tests import pg_server
from tests.conftest import postgres_target, raw_sql
from tests.serve.conftest import free_port, stop
from tests.serve.fault_server import fault_server
from tests.serve.replicas import Replicas, replicas

MOCK = Path(__file__).parents[1] / "serve" / "mock_upstream.py"
TEAM_RPM = 30
BUDGET = 300  # tokens; each answer costs 6 (5 in, 1 out) and reserves 37 (33 prompt bound + 4)

QUOTAS = f"""
[quotas]
enabled = true
lease_s = 10

[quotas.groups.team]
rpm = {TEAM_RPM}

[quotas.groups.budgeted]
budget_tokens = {BUDGET}
"""


@pytest.fixture
def upstream() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(MOCK), str(port)])
    try:
        yield port
    finally:
        stop(proc)


def _model(port: int) -> str:
    return f'[[models]]\nname = "mock"\nbackend = "openai"\nurl = "http://127.0.0.1:{port}/v1"\n'


async def _spread(running: Replicas, key: str, n: int, at_once: int = 24) -> list[httpx.Response]:
    """``n`` requests, round-robin over the replicas, ``at_once`` in flight."""
    gate = asyncio.Semaphore(at_once)
    body = {"model": "mock", "messages": [{"role": "user", "content": "q"}], "max_tokens": 4}
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(running.bases[i % len(running.bases)] + "/v1/chat/completions", json=body)

        return await asyncio.gather(*(one(i) for i in range(n)))


def _audited_requests(running: Replicas) -> list[dict[str, Any]]:
    found = running.bastion("audit", "search", "--kind", "request", "--limit", "100000", "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    doc: Any = json.loads(found.stdout)
    return list(doc["entries"] if isinstance(doc, dict) else doc)


@pytest.mark.slow
def test_three_replicas_on_postgresql_never_overspend_together(
    tmp_path: Path, postgres: pg_server.Server, upstream: int
) -> None:
    target = postgres_target(postgres)
    keys = KeyStore(target)
    team = keys.create("team-member", ["*"], groups=["team"])
    spender = keys.create("spender", ["*"], groups=["budgeted"])
    keys.close()
    with replicas(tmp_path, store=target, count=3, models=_model(upstream), admit={}, config=QUOTAS) as running:
        per_minute = asyncio.run(_spread(running, team.key, 4 * TEAM_RPM))
        budgeted = asyncio.run(_spread(running, spender.key, 150))
        audited = _audited_requests(running)
        usage = running.bastion("usage", "--by", "key", "--json")
    assert usage.returncode == 0, usage.stdout + usage.stderr

    # rpm: each replica alone would have admitted TEAM_RPM; together they admit exactly TEAM_RPM
    statuses = Counter(r.status_code for r in per_minute)
    assert statuses == {200: TEAM_RPM, 429: 3 * TEAM_RPM}, statuses
    # budget: what was spent never passes it, and the budget was really used up (not refused early)
    ok = [r for r in budgeted if r.status_code == 200]
    refused = [r for r in budgeted if r.status_code != 200]
    assert refused and all(r.status_code == 429 for r in refused)
    for r in (*refused, *(r for r in per_minute if r.status_code == 429)):
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    store = UsageStore(target)
    spent = store.budget_used("group:budgeted", period_start("month", datetime.now(UTC)))
    store.close()
    assert spent == 6 * len(ok) <= BUDGET
    assert len(ok) >= 10  # the budget was really spent on answers, not refused from the start

    # the usage report and the audit log agree, request for request and token for token
    lines = {line["name"].split(" ")[0]: line for line in json.loads(usage.stdout)["lines"]}
    for key, answered in ((team, TEAM_RPM), (spender, len(ok))):
        entries = [e for e in audited if e["principal"] in (key.record.id, key.record.name)
                   and e["status"] == 200]
        line = lines[key.record.id]
        assert line["requests"] == len(entries) == answered
        assert line["tokens_in"] == sum(e["tokens_in"] for e in entries) == 5 * answered
        assert line["tokens_out"] == sum(e["tokens_out"] for e in entries) == answered
    refusals = [e for e in audited if e["status"] == 429]
    assert len(refusals) == 3 * TEAM_RPM + len(refused)  # every refusal is audited too


def _held(target: PostgresTarget) -> int:
    return int(raw_sql(target, "SELECT count(*) FROM quota_hold")[0][0])


@pytest.mark.slow
def test_a_killed_replicas_reservation_stops_holding_the_budget_after_its_lease(
    tmp_path: Path, postgres: pg_server.Server
) -> None:
    # A request hangs on its upstream at replica 0 while holding 73 of a 100-token budget; replica 0 is
    # killed with SIGKILL. Until its lease ends the budget stays held (replica 1 refuses); then replica 1
    # admits again, and what was settled stays spent.
    target = postgres_target(postgres)
    keys = KeyStore(target)
    spender = keys.create("spender", ["*"], groups=["budgeted"])
    keys.close()
    config = "[quotas]\nenabled = true\nlease_s = 3\n[quotas.groups.budgeted]\nbudget_tokens = 100\n"
    ask = {"messages": [{"role": "user", "content": "q"}], "max_tokens": 40}  # reserves 33 + 40 = 73
    headers = {"Authorization": f"Bearer {spender.key}"}
    with fault_server() as upstream:
        models = "".join(
            f'[[models]]\nname = "{name}"\nbackend = "openai"\nurl = "{upstream.url(scenario)}"\n'
            f'upstream_model = "up"\nretries = 0\n' for name, scenario in (("hung", "no-headers"), ("ok", "ok")))
        with replicas(tmp_path, store=target, count=2, models=models, admit={}, config=config) as running:
            hanging = threading.Thread(target=lambda: _quietly(
                lambda: httpx.post(running.bases[0] + "/v1/chat/completions", json={"model": "hung", **ask},
                                   headers=headers, timeout=60)), daemon=True)
            hanging.start()
            deadline = time.monotonic() + 30
            while _held(target) == 0:
                assert time.monotonic() < deadline, "the hanging request never reserved"
                time.sleep(0.1)
            other = httpx.post(running.bases[1] + "/v1/chat/completions", json={"model": "ok", **ask},
                               headers=headers, timeout=60)
            assert other.status_code == 429, other.text  # 73 held by replica 0 + 73 > 100
            running.procs[0].kill()  # SIGKILL: no settle, no lease dropped
            killed = time.monotonic()
            while True:
                other = httpx.post(running.bases[1] + "/v1/chat/completions", json={"model": "ok", **ask},
                                   headers=headers, timeout=60)
                if other.status_code == 200:
                    released = time.monotonic() - killed
                    break
                assert other.status_code == 429, other.text
                assert time.monotonic() - killed < 3 + 3 + 10, "the dead replica's hold never lapsed"
                time.sleep(0.5)
            deadline = time.monotonic() + 10
            while _held(target):  # the dead hold is deleted by the living replica's next renewal
                assert time.monotonic() < deadline, "the dead replica's hold was never swept"
                time.sleep(0.2)
    assert released >= 1.0  # not released at once: the lease ran out first
    store = UsageStore(target)
    spent = store.budget_used("group:budgeted", period_start("month", datetime.now(UTC)))
    store.close()
    assert spent == 4  # the answered request (3 in, 1 out); the killed one is not charged


def _quietly(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()
