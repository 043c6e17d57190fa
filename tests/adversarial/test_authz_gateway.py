"""Attacks by an API key holder on a real gateway process serving the real SmolLM2.

Each test is an attack from the wave-1 adversarial review (issue 10, findings 1-2) that once worked:
a key allowed only an upstream model reached a secret local model through the upstream's fallback,
and any key holder (or anyone, for /healthz) saw server paths and refusal reasons.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from bastion.keys import KeyStore
from tests.serve.conftest import free_port, serving

ASK = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass(frozen=True)
class Attack:
    base: str
    home: Path
    config: Path
    contractor: str  # may call only "cloud" (an upstream), not cleared
    analyst: str  # cleared to secret, every model


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    home = tmp_path_factory.mktemp("authz-home")
    store = KeyStore(home / "bastion.db")
    contractor = store.create("contractor", ["cloud"]).key
    analyst = store.create("analyst", ["*"], ["analysts"]).key
    store.close()
    config = f"""
[policy]
access = "enterprise"
clearance = {{ analysts = "secret" }}

[[models]]
name = "cloud"
backend = "openai"
url = "http://127.0.0.1:{free_port()}/v1"
fallbacks = ["smol"]

[[models]]
name = "smol"
path = "bundled:smollm2"
classification = "secret"
n_threads = 1
"""
    with serving(home, config, {"smol": "bundled:smollm2"}, server="admin_loopback = false") as base:
        yield Attack(base, home, home / "bastion.toml", contractor, analyst)


def audit_entries(gw: Attack) -> list[dict[str, object]]:
    env = {**os.environ, "BASTION_HOME": str(gw.home), "BASTION_KEY_HOME": f"{gw.home}-keys"}
    out = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "audit", "search", "--json", "--config", str(gw.config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    doc = json.loads(out.stdout)
    return list(doc["entries"] if isinstance(doc, dict) else doc)


def test_fallback_to_a_secret_model_is_refused_to_an_uncleared_key(gw: Attack) -> None:
    client = OpenAI(base_url=gw.base + "/v1", api_key=gw.contractor, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="cloud", messages=ASK, max_tokens=8)
    assert refused.value.status_code == 503
    assert "smol (model_not_allowed)" in str(refused.value)
    request_id = refused.value.response.headers["x-request-id"]
    entry = next(e for e in audit_entries(gw) if e.get("request_id") == request_id)
    assert entry["status"] == 503 and entry["decision"] == "allow"  # cloud itself was allowed...
    assert entry["weights_digest"] == ""  # ...but no weights answered
    assert {"model": "smol", "reason": "model_not_allowed"} in entry["skipped"]  # type: ignore[operator]


def test_streamed_fallback_to_a_secret_model_is_refused_too(gw: Attack) -> None:
    r = httpx.post(
        gw.base + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gw.contractor}"},
        json={"model": "cloud", "messages": ASK, "max_tokens": 8, "stream": True},
        timeout=60,
    )
    assert r.status_code == 503
    assert "Paris" not in r.text


def test_a_cleared_key_gets_the_fallback_and_the_audit_names_who_answered(gw: Attack) -> None:
    client = OpenAI(base_url=gw.base + "/v1", api_key=gw.analyst, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="cloud", messages=ASK, max_tokens=8, temperature=0
    )
    assert raw.headers["x-bastion-model"] == "smol"
    entry = next(e for e in audit_entries(gw) if e.get("request_id") == raw.headers["x-request-id"])
    assert entry["model"] == "smol" and str(entry["weights_digest"]).startswith("sha256:b179c952")
    assert entry["skipped"] == [{"model": "cloud", "reason": "unhealthy"}]


def test_models_lists_what_cedar_permits_without_paths(gw: Attack) -> None:
    listed = OpenAI(base_url=gw.base + "/v1", api_key=gw.contractor, max_retries=0).models.list()
    assert [m.id for m in listed.data] == ["cloud"]
    raw = httpx.get(gw.base + "/v1/models", headers={"Authorization": f"Bearer {gw.analyst}"}).text
    assert "smol" in raw
    assert str(gw.home) not in raw and "site-packages" not in raw and "127.0.0.1" not in raw


def test_health_tells_the_public_only_up_or_down(gw: Attack) -> None:
    public = httpx.get(gw.base + "/healthz")
    assert public.json() == {"status": "ok"}
    assert httpx.get(gw.base + "/metrics").status_code == 403
