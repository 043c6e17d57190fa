"""64 concurrent streams against nested key ⊂ group ⊂ organisation budgets: zero overspend.

The gateway's request flow runs in-process (real key store, Cedar, audit log, usage store); the model
is scripted so the test controls exactly how many tokens each answer costs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bastion.audit import AuditLog
from bastion.audit.keys import create_keys
from bastion.config import Settings
from bastion.keys import KeyStore
from bastion.policy import AccessPolicy, CedarAuthorizer
from bastion.quota import UsageStore
from bastion.quota.quotas import Quotas
from bastion.serve.app import build_app
from bastion.serve.backends.scripted import ScriptedBackend
from bastion.serve.gateway import Gateway
from bastion.serve.router import Router
from bastion.store import Target
from tests.conftest import store_settings, store_toml

pytestmark = pytest.mark.anyio
ANSWER = "one two three four five"  # 5 completion tokens per answer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def open_gateway(tmp_path: Path, target: Target, quotas: dict[str, object]) -> tuple[Gateway, KeyStore]:
    settings = Settings.model_validate(
        {
            "store": store_settings(target),
            "audit": {"path": str(tmp_path / "audit.db"), "signing_key": str(tmp_path / "a.key"),
                      "body_key": str(tmp_path / "b.key")},
            "quotas": {"enabled": True, **quotas},
            "models": [{"name": "smol", "path": "bundled:smollm2"}],
        }
    )
    create_keys(settings.audit.signing_key, settings.audit.body_key)
    keys = KeyStore(settings.store.target())
    quota = Quotas.open(settings.quotas, settings.store.target())
    backend = ScriptedBackend("smol", ANSWER)
    backend.delay_s = 0.02  # streams stay open together, so reservations overlap
    gateway = Gateway(settings, keys, Router({"smol": backend}, {}),
                      CedarAuthorizer(AccessPolicy("permissive")), AuditLog.open(settings.audit), quotas=quota)
    await gateway.start()
    return gateway, keys


async def fire(gateway: Gateway, key: str, n: int, stream: bool) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=build_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": stream}
        return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(n)))


async def test_64_concurrent_streams_never_overspend_nested_budgets(tmp_path: Path, store_target: Target) -> None:
    # Each request reserves prompt bytes (2) + 2 messages x 16 + max_tokens (5) = 39 tokens and spends 5.
    gateway, keys = await open_gateway(tmp_path, store_target, {
        "key": {"budget_tokens": 400},          # 10 reservations fit in a key's budget
        "groups": {"analysts": {"budget_tokens": 600}},
        "organisation": {"budget_tokens": 1000},
    })
    a = keys.create("a", ["*"], ["analysts"]).key
    b = keys.create("b", ["*"], ["analysts"]).key
    c = keys.create("c", ["*"]).key
    try:
        results = await asyncio.gather(fire(gateway, a, 64, True), fire(gateway, b, 64, True),
                                       fire(gateway, c, 64, False))
    finally:
        await gateway.stop()
    ok = {name: sum(r.status_code == 200 for r in rs) for name, rs in zip("abc", results, strict=True)}
    refused = [r for rs in results for r in rs if r.status_code != 200]
    # 192 requests of 6 tokens each (1 prompt + 5 answer) cannot all fit the organisation's 1000.
    assert refused and all(r.status_code == 429 for r in refused)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    for r in (r for rs in results[:2] for r in rs if r.status_code == 200):
        assert r.text.rstrip().endswith("data: [DONE]")
    store = UsageStore(store_target)
    try:
        spent = {row.key_id: row.tokens_in + row.tokens_out for row in store.daily()}
        period = gateway.quotas._period  # type: ignore[union-attr]
        org = store.budget_used("org", period)
        group = store.budget_used("group:analysts", period)
    finally:
        store.close()
    assert sum(spent.values()) == 6 * sum(ok.values())  # every answered request settled exactly once
    assert org == sum(spent.values()) <= 1000
    assert group == spent.get(a.split("_")[1], 0) + spent.get(b.split("_")[1], 0) <= 600
    assert all(v <= 400 for v in spent.values())


async def test_a_rate_limited_response_carries_openai_headers(tmp_path: Path, store_target: Target) -> None:
    gateway, keys = await open_gateway(tmp_path, store_target, {"key": {"rpm": 2, "tpm": 1000}})
    key = keys.create("a", ["*"]).key
    try:
        (first,) = await fire(gateway, key, 1, False)
        (second,) = await fire(gateway, key, 1, False)
        (third,) = await fire(gateway, key, 1, False)
    finally:
        await gateway.stop()
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.headers["x-ratelimit-remaining-requests"] == "0"


async def test_usage_command_sums_by_key_group_and_model(tmp_path: Path, store_target: Target) -> None:
    import json
    import os
    import subprocess
    import sys

    gateway, keys = await open_gateway(tmp_path, store_target, {})
    a = keys.create("alice", ["*"], ["analysts"]).key
    try:
        await fire(gateway, a, 3, False)
        await fire(gateway, a, 2, True)
    finally:
        await gateway.stop()
    config = tmp_path / "bastion.toml"
    config.write_text(store_toml(store_target))
    env = {**os.environ, "BASTION_HOME": str(tmp_path)}
    docs = {}
    for by in ("key", "group", "model"):
        run = subprocess.run([sys.executable, "-m", "bastion.cli.main", "usage", "--by", by, "--json", "--config",
                              str(config)], capture_output=True, text=True, env=env, check=True, timeout=60)
        docs[by] = json.loads(run.stdout)["lines"]
    key_id = a.split("_")[1]
    (line,) = docs["key"]
    assert line.pop("seconds") > 0  # the time answering is recorded (throughput, local cost)
    assert line == {"name": f"{key_id} (alice)", "requests": 5, "tokens_in": 5, "tokens_out": 25}
    assert [line["name"] for line in docs["group"]] == ["analysts"]
    assert [line["name"] for line in docs["model"]] == ["smol"]
