"""The request flow in-process, through an ASGI transport, with scripted backends.

Everything but text generation is real: the key store (SQLite), Cedar, the router, the audit log.
These run in milliseconds; the end-to-end versions with real models are in test_api.py and
tests/adversarial/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.audit import AuditLog
from bastion.audit.db_store import open_store
from bastion.audit.keys import create_keys
from bastion.config import Settings
from bastion.keys import KeyStore
from bastion.policy import AccessPolicy, CedarAuthorizer
from bastion.serve.app import build_app
from bastion.serve.backends.scripted import ScriptedBackend
from bastion.serve.gateway import Gateway
from bastion.serve.router import Router

pytestmark = pytest.mark.anyio
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@dataclass
class Flow:
    gateway: Gateway
    backends: dict[str, ScriptedBackend]
    keys: dict[str, str]
    home: Path

    def client(self, key: str | None, peer: str = "203.0.113.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=build_app(self.gateway), client=(peer, 40000))
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)

    def audit_entries(self) -> list[dict[str, object]]:
        self.gateway.audit.flush()  # type: ignore[union-attr]
        store = open_store(self.home / "audit.db")
        try:
            return [json.loads(leaf) for batch in store.leaves_between(None, None) for _, leaf in batch]
        finally:
            store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def flow(tmp_path: Path) -> AsyncIterator[Flow]:
    """cloud (an upstream, public) falls back to smol (local, secret); gemma is public and local."""
    settings = Settings.model_validate(
        {
            "policy": {"access": "enterprise", "clearance": {"analysts": "secret"}},
            "audit": {
                "path": str(tmp_path / "audit.db"),
                "signing_key": str(tmp_path / "audit.key"),
                "body_key": str(tmp_path / "body.key"),
            },
            "models": [
                {"name": "cloud", "backend": "openai", "url": "http://127.0.0.1:9/v1", "fallbacks": ["smol"],
                 "provider": "acme-cloud", "country": "US"},
                {"name": "smol", "path": "bundled:smollm2", "classification": "secret"},
                {"name": "gemma", "path": "bundled:gemma3", "fallbacks": ["smol"]},
            ],
        }
    )
    create_keys(settings.audit.signing_key, settings.audit.body_key)
    store = KeyStore(tmp_path / "keys.db")
    keys = {
        "cloud-only": store.create("contractor", ["cloud"]).key,
        "analyst": store.create("analyst", ["*"], ["analysts"]).key,
        "admin": store.create("ops", ["*"], ["bastion-admin"]).key,
    }
    backends = {
        "cloud": ScriptedBackend("cloud", "from the cloud"),
        "smol": ScriptedBackend("smol", "from smol", digest="sha256:" + "a" * 64),
        "gemma": ScriptedBackend("gemma", "from gemma"),
    }
    router = Router(backends, {m.name: m.fallbacks for m in settings.models})
    audit = AuditLog.open(settings.audit)
    gateway = Gateway(settings, store, router, CedarAuthorizer(AccessPolicy("enterprise", {"analysts": 2})), audit)
    await gateway.start()
    try:
        yield Flow(gateway, backends, keys, tmp_path)
    finally:
        await gateway.stop()


def requests_in(flow: Flow) -> list[dict[str, object]]:
    return [e for e in flow.audit_entries() if e["kind"] == "request"]


async def test_a_fallback_is_authorised_for_the_caller_before_it_answers(flow: Flow) -> None:
    flow.backends["cloud"].up = False
    async with flow.client("cloud-only") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
    # smol is secret; the contractor is not cleared: the fallback must not answer.
    assert r.status_code == 503, r.text
    assert "smol (model_not_allowed)" in r.json()["error"]["message"]
    assert flow.backends["smol"].received == []
    entry = requests_in(flow)[-1]
    assert entry["status"] == 503 and entry["model"] == "cloud"
    assert {"model": "smol", "reason": "model_not_allowed"} in entry["skipped"]  # type: ignore[operator]


async def test_a_streamed_fallback_is_authorised_too(flow: Flow) -> None:
    flow.backends["cloud"].up = False
    async with flow.client("cloud-only") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", "stream": True, **CHAT})
    assert r.status_code == 503
    assert flow.backends["smol"].received == []


async def test_a_permitted_fallback_answers_and_the_audit_names_it(flow: Flow) -> None:
    flow.backends["cloud"].up = False
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
    assert r.status_code == 200
    assert r.headers["x-bastion-model"] == "smol"
    assert r.json()["choices"][0]["message"]["content"] == "from smol"
    entry = requests_in(flow)[-1]
    assert entry["model"] == "smol" and entry["weights_digest"] == "sha256:" + "a" * 64
    assert entry["skipped"] == [{"model": "cloud", "reason": "unhealthy"}]


async def test_the_requested_model_is_authorised_by_cedar(flow: Flow) -> None:
    async with flow.client("cloud-only") as c:
        r = await c.post("/v1/chat/completions", json={"model": "gemma", **CHAT})
    assert r.status_code == 403
    assert "access.key-model-list" in r.text or "no permit statement matched" in r.text
    assert requests_in(flow)[-1]["decision"] == "deny:model_not_allowed"


async def test_models_lists_what_cedar_permits_and_no_paths(flow: Flow) -> None:
    async with flow.client("cloud-only") as c:
        listed = (await c.get("/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["cloud"]
    async with flow.client("analyst") as c:
        listed = (await c.get("/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["cloud", "smol", "gemma"]
    text = json.dumps(listed)
    assert "bundled:" not in text and "127.0.0.1:9" not in text and "/" not in text.replace("sha256:", "")


async def test_refusals_of_every_endpoint_are_audited(flow: Flow) -> None:
    async with flow.client(None) as c:
        assert (await c.get("/v1/models")).status_code == 401
        assert (await c.get("/metrics")).status_code == 403
        assert (await c.post("/admin/reload")).status_code == 403
    statuses = [(e["status"], e["decision"]) for e in requests_in(flow)]
    assert statuses == [
        (401, "deny:invalid_api_key"),
        (403, "deny:model_not_allowed"),
        (403, "deny:model_not_allowed"),
    ]


async def test_health_says_only_up_or_down_to_the_public(flow: Flow) -> None:
    flow.backends["gemma"].up = False
    async with flow.client(None) as c:
        public = (await c.get("/healthz")).json()
    assert public == {"status": "ok"}
    async with flow.client("admin") as c:
        detail = (await c.get("/healthz")).json()
        assert (await c.get("/metrics")).status_code == 200
    assert detail["models"]["gemma"]["healthy"] is False
    async with flow.client(None, peer="127.0.0.1") as c:  # loopback is an administrator by default
        assert "models" in (await c.get("/healthz")).json()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "gemma", "temperature": None, **CHAT}, 200),
        ({"model": "gemma", "max_tokens": None, "stop": None, "messages": CHAT["messages"]}, 200),
        ({"model": "gemma", "messages": [{"role": "user", "content": None}]}, 400),
        ({"model": "gemma", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400),
        ({"model": "gemma", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 200),
        ({"model": "gemma", "messages": "hello"}, 400),
    ],
)
async def test_odd_bodies_are_400_or_served_and_always_audited(
    flow: Flow, body: dict[str, object], status: int
) -> None:
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert requests_in(flow)[-1]["status"] == status
    if status == 200:
        sent = flow.backends["gemma"].received[-1]
        assert None not in sent.values()
        assert all(isinstance(m["content"], str) for m in sent["messages"])  # type: ignore[index, union-attr]


async def test_an_unexpected_backend_error_is_an_audited_500(flow: Flow) -> None:
    flow.backends["gemma"].error = TypeError("a bug in a backend")
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "gemma", **CHAT})
    assert r.status_code == 500 and "a bug" not in r.text
    assert r.json()["error"]["code"] == "internal_error"
    assert requests_in(flow)[-1]["status"] == 500


async def test_reload_rereads_the_policy(flow: Flow, tmp_path: Path) -> None:
    async with flow.client("admin") as c:
        r = await c.post("/admin/reload")
    assert r.status_code == 200 and r.json()["policy"] == "reloaded"
    await asyncio.sleep(0)
