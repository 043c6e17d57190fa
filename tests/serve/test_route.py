"""Routes with priority tiers: weighted and least-outstanding balancing, failover to the next tier."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import AuditLog
from bastion.audit.keys import create_keys
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.keys import KeyStore
from bastion.policy import AccessPolicy, CedarAuthorizer
from bastion.serve.backends.scripted import ScriptedBackend
from bastion.serve.gateway import Gateway
from bastion.serve.router import Route, Router
from tests.serve.test_flow import CHAT, Flow, anyio_backend, requests_in  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio
UPSTREAM = {"backend": "openai", "url": "http://127.0.0.1:9/v1"}


def pool_settings(tmp_path: Path, balance: str = "weighted") -> Settings:
    """chat spreads over chat (weight 3) and chat-b (weight 1); smol (local) is the next tier."""
    return Settings.model_validate(
        {
            "policy": {"access": "enterprise", "clearance": {"analysts": "secret"}},
            "audit": {"path": str(tmp_path / "audit.db"), "signing_key": str(tmp_path / "audit.key"),
                      "body_key": str(tmp_path / "body.key")},
            "models": [
                {"name": "chat", **UPSTREAM, "weight": 3, "route": [["chat", "chat-b"], ["smol"]],
                 "balance": balance, "retries": 0},
                {"name": "chat-b", **UPSTREAM, "weight": 1},
                {"name": "vault", **UPSTREAM, "classification": "secret", "weight": 50},
                {"name": "smol", "path": "bundled:smollm2"},
                # a pool one of whose deployments is secret, and its next tier too (tests/adversarial)
                {"name": "mixed", **UPSTREAM, "weight": 1, "route": [["mixed", "vault"], ["smol"]],
                 "fallbacks": [], "retries": 0},
            ],
        }
    )


async def start_flow(tmp_path: Path, settings: Settings) -> Flow:
    create_keys(settings.audit.signing_key, settings.audit.body_key)
    store = KeyStore(tmp_path / "keys.db")
    keys = {
        "user": store.create("user", ["*"]).key,
        "analyst": store.create("analyst", ["*"], ["analysts"]).key,
        "admin": store.create("ops", ["*"], ["bastion-admin"]).key,
    }
    backends = {m.name: ScriptedBackend(m.name, f"from {m.name}") for m in settings.models}
    router = Router.from_settings(backends, settings.models)
    gateway = Gateway(settings, store, router, CedarAuthorizer(AccessPolicy("enterprise", {"analysts": 2})),
                      AuditLog.open(settings.audit))
    await gateway.start()
    return Flow(gateway, backends, keys, tmp_path)


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Flow]:
    flow = await start_flow(tmp_path, pool_settings(tmp_path))
    try:
        yield flow
    finally:
        await flow.gateway.stop()


def test_a_tier_is_drawn_by_weight() -> None:
    backends: dict[str, Any] = {n: ScriptedBackend(n) for n in ("a", "b", "c")}
    router = Router(backends, routes={"a": Route((("a", "b"), ("c",)))}, weights={"a": 3.0, "b": 1.0})
    firsts = Counter(router.route("a")[0] for _ in range(4000))
    # 3:1 -> 75 % on a; sd of the share is 0.7 %, the bound is 7 sd: wide enough never to flake
    assert 0.70 <= firsts["a"] / 4000 <= 0.80
    assert set(firsts) == {"a", "b"}  # the next tier is never first while the first can answer
    assert all(router.route("a")[2] == "c" for _ in range(50))


def test_least_outstanding_tries_the_idle_deployment_first() -> None:
    backends: dict[str, Any] = {n: ScriptedBackend(n) for n in ("a", "b")}
    router = Router(backends, routes={"a": Route((("a", "b"),), "least_outstanding")})
    router.begin("a")
    assert all(router.route("a") == ["a", "b"][::-1] for _ in range(50))
    router.begin("b")
    router.begin("b")
    assert all(router.route("a")[0] == "a" for _ in range(50))
    router.end("b")
    router.end("b")
    router.end("a")
    assert {router.route("a")[0] for _ in range(200)} == {"a", "b"}  # idle alike: both get traffic


def test_an_unhealthy_deployment_goes_to_the_end_of_the_route() -> None:
    backends: dict[str, Any] = {n: ScriptedBackend(n) for n in ("a", "b", "c")}
    backends["a"].up = False
    router = Router(backends, routes={"a": Route((("a", "b"), ("c",)))})
    assert all(router.route("a") == ["b", "c", "a"] for _ in range(20))


def test_fallbacks_are_tiers_of_one_after_the_route() -> None:
    settings = Settings.model_validate({"models": [
        {"name": "a", **UPSTREAM, "route": [["a", "b"]], "fallbacks": ["c"]},
        {"name": "b", **UPSTREAM}, {"name": "c", **UPSTREAM}, {"name": "d", **UPSTREAM, "fallbacks": ["c"]}]})
    router = Router.from_settings({m.name: ScriptedBackend(m.name) for m in settings.models}, settings.models)
    assert router.tiers("a") == [["a", "b"], ["c"]]
    assert router.tiers("d") == [["d"], ["c"]]


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ([["b"]], "first tier of its route must include"),
        ([["a"], ["zz"]], "not a configured model"),
        ([["a", "b"], ["b"]], "more than once"),
        ([["a"], []], "empty"),
    ],
)
def test_a_bad_route_is_a_configuration_error(tmp_path: Path, route: list[list[str]], error: str) -> None:
    from bastion.config import load_settings

    config = tmp_path / "bastion.toml"
    config.write_text(
        f'[[models]]\nname = "a"\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\nroute = {route!r}\n'
        '[[models]]\nname = "b"\nbackend = "openai"\nurl = "http://127.0.0.1:9/v1"\n'.replace("'", '"'))
    with pytest.raises(ConfigError, match=error):
        load_settings(config)


async def test_traffic_spreads_over_the_first_tier_in_the_gateway(pool: Flow) -> None:
    async with pool.client("user") as c:
        for _ in range(40):
            r = await c.post("/v1/chat/completions", json={"model": "chat", **CHAT})
            assert r.status_code == 200
    served = pool.backends["chat"].attempts, pool.backends["chat-b"].attempts
    assert sum(served) == 40 and served[0] > 0 and served[1] > 0  # 3:1, P(one of them gets none) < 1e-4
    assert pool.backends["smol"].attempts == 0


async def test_a_failing_deployment_fails_over_inside_its_tier_then_to_the_next(pool: Flow) -> None:
    pool.backends["chat"].fail_next = 1_000  # failing, but its health check has not noticed
    async with pool.client("user") as c:
        r = await c.post("/v1/chat/completions", json={"model": "chat", **CHAT})
        assert r.headers["x-bastion-model"] == "chat-b"
        pool.backends["chat-b"].up = False
        r = await c.post("/v1/chat/completions", json={"model": "chat", **CHAT})
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
    entry = requests_in(pool)[-1]
    assert entry["model"] == "smol"
    assert {"model": "chat", "reason": "backend_unavailable"} in entry["skipped"]  # type: ignore[operator]


async def test_admin_routes_show_the_tiers(pool: Flow) -> None:
    async with pool.client("admin") as c:
        routes = (await c.get("/admin/routes")).json()
    assert routes["chat"]["tiers"] == [["chat", "chat-b"], ["smol"]]
    assert routes["chat"]["fallbacks"] == ["chat-b", "smol"] and routes["chat"]["balance"] == "weighted"
    assert routes["chat"]["outstanding"] == 0


async def test_least_outstanding_in_the_gateway_sends_a_request_to_the_idle_deployment(tmp_path: Path) -> None:
    flow = await start_flow(tmp_path, pool_settings(tmp_path, "least_outstanding"))
    try:
        flow.gateway.router.begin("chat")  # a long stream holds chat busy
        async with flow.client("user") as c:
            for _ in range(5):
                r = await c.post("/v1/chat/completions", json={"model": "chat", **CHAT})
                assert r.headers["x-bastion-model"] == "chat-b"
        assert flow.gateway.router.outstanding == {"chat": 1, "chat-b": 0}  # every request ended
    finally:
        await flow.gateway.stop()
