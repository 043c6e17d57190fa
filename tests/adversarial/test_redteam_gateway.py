"""Red team, wave 2: attacks by an API key holder and by hostile upstreams on a real gateway process.

One gateway (real SmolLM2 admitted and served by llama.cpp, quotas on, upstreams from the socket-level
fault server in ``tests/serve/fault_server.py``) takes every attack. Each test below once worked against
the code the README's security section describes, and says what broke; the fix is named in the test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import free_port, serving
from tests.serve.fault_server import ANSWERING, SMOLLM2_DIGEST, FaultServer, fault_server

ASK = [{"role": "user", "content": "Say hi."}]
BUDGET = 20_000  # tokens per key per period


@dataclass(frozen=True)
class Target:
    base: str
    home: Path
    keys: KeyStore
    upstream: FaultServer

    def key(self, name: str) -> tuple[str, str]:
        """A fresh key (its own budget) and its id."""
        made = self.keys.create(name, ["*"])
        return made.key, made.record.id

    def post(self, key: str, body: dict[str, object], path: str = "/v1/chat/completions") -> httpx.Response:
        return httpx.post(self.base + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    def budget_used(self, key_id: str) -> int:
        with sqlite3.connect(f"file:{self.home / 'bastion.db'}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT sum(tokens) FROM budget_usage WHERE scope = ?", (f"key:{key_id}",)).fetchone()
        return int(row[0] or 0)

    def bastion(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BASTION_HOME": str(self.home), "BASTION_KEY_HOME": f"{self.home}-keys"}
        return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args, "--config",
                               str(self.home / "bastion.toml")], capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    def audit_entry(self, request_id: str) -> dict[str, object]:
        out = self.bastion("audit", "search", "--json")
        doc = json.loads(out.stdout)
        entries = doc["entries"] if isinstance(doc, dict) else doc
        return next(e for e in entries if e.get("request_id") == request_id)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    home = tmp_path_factory.mktemp("redteam")
    keys = KeyStore(home / "bastion.db")
    with fault_server() as upstream:
        upstreams = "".join(
            f'\n[[models]]\nname = "{s}"\nbackend = "openai"\nurl = "{upstream.url(s)}"\nupstream_model = "up"\n'
            for s in ANSWERING
        )
        config = f"""
[quotas]
enabled = true
key = {{ budget_tokens = {BUDGET} }}

[[models]]
name = "smol"
path = "bundled:smollm2"
n_threads = 1

[[models]]
name = "moved"
path = "{home / 'elsewhere' / 'smollm2.gguf'}"
n_threads = 1

[[models]]
name = "dead"
backend = "openai"
url = "http://127.0.0.1:{free_port()}/v1"
# refused health checks would open its circuit before a request tries it; the attack is on the
# message of a real failed connection
health_interval_s = 3600

[[models]]
name = "regulated"
backend = "openai"
url = "{upstream.url('honest')}"
upstream_model = "up"
{upstreams}"""
        admitted = {"smol": "bundled:smollm2", "moved": "bundled:smollm2"}
        with serving(home, config, admitted, server="admin_loopback = false") as base:
            yield Target(base, home, keys, upstream)
    keys.close()


# -- request bodies: a 500 where a 400 (or an answer) belongs ------------------------------------------


def test_numbers_sent_as_strings_are_the_validated_numbers(target: Target) -> None:
    """Validation accepted "0.5" for temperature but the backend got the raw string: 500 (TypeError in
    llama-cpp-python; with quotas on, TypeError in the reservation). Fix: normalise() hands on the
    validated request, not the raw body."""
    key, _ = target.key("strings")
    r = target.post(key, {"model": "smol", "messages": ASK, "max_tokens": "2", "temperature": "0.5"})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 2
    # "stream": "false" passed validation as False, yet the gateway streamed (the raw string is truthy).
    r = target.post(key, {"model": "smol", "prompt": "Hi", "max_tokens": 2, "stream": "false"}, "/v1/completions")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text[:200]


def test_a_turn_the_chat_template_cannot_render_is_an_audited_400(target: Target) -> None:
    """An assistant turn without content (valid OpenAI) made SmolLM2's template concatenate None: 500
    without streaming, 400 with it. Fix: the llama.cpp backend maps template and type errors to 400."""
    key, _ = target.key("template")
    messages = [*ASK, {"role": "assistant", "content": None}, {"role": "user", "content": "Again."}]
    r = target.post(key, {"model": "smol", "messages": messages, "max_tokens": 2})
    assert r.status_code == 400, r.text
    assert target.audit_entry(r.headers["x-request-id"])["status"] == 400


# -- what clients are told: no server paths or upstream addresses --------------------------------------


def test_a_dead_upstream_does_not_tell_clients_where_it_lives(target: Target) -> None:
    """The 503 carried aiohttp's repr: ConnectionKey(host='127.0.0.1', port=N ...). Fix: a plain
    'could not be reached' to the client, the details in the gateway log."""
    key, _ = target.key("dead")
    r = target.post(key, {"model": "dead", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 503
    assert "127.0.0.1" not in r.text and "port" not in r.text, r.text
    assert "could not be reached" in r.json()["error"]["message"]


def test_a_refused_model_does_not_tell_clients_its_path(target: Target) -> None:
    """A model refused at start-up answered 403 with the refusal as logged: 'admitted from /..., not
    /...'. Fix: absolute paths are cut from what clients are told (the log keeps them)."""
    key, _ = target.key("paths")
    r = target.post(key, {"model": "moved", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 403
    message = r.json()["error"]["message"]
    assert "was admitted from" in message
    assert str(target.home) not in message and "site-packages" not in message and ".gguf" not in message, message


def test_made_up_model_names_do_not_grow_the_metrics(target: Target) -> None:
    """Every unknown model name a key holder sent became new Prometheus series (memory without bound,
    and in /metrics for the operator to page through). Fix: such requests are labelled '-'."""
    key, _ = target.key("names")
    for i in range(5):
        assert target.post(key, {"model": f"nonsense-{i}", "messages": ASK}).status_code == 404
    admin = target.keys.create("ops", ["*"], ["bastion-admin"]).key
    metrics = httpx.get(target.base + "/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    assert "nonsense-" not in metrics
    assert 'bastion_requests_total{endpoint="chat",model="-",status="404"}' in metrics


# -- hostile upstreams and quotas ---------------------------------------------------------------------


def test_an_upstream_cannot_label_its_answer_with_an_admitted_digest(target: Target) -> None:
    """The local backend stamps system_fingerprint with the digest of the sealed bytes; an upstream's
    system_fingerprint passed through untouched, so an upstream could claim to be the admitted SmolLM2
    (sha256:b179...) in the body of every answer, streamed or not. Fix: the upstream backend drops it."""
    key, _ = target.key("impostor")
    r = target.post(key, {"model": "impostor", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert SMOLLM2_DIGEST not in r.text and "x-bastion-model-digest" not in r.headers
    with httpx.stream("POST", target.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "impostor", "messages": ASK, "max_tokens": 2, "stream": True},
                      timeout=60) as s:
        assert SMOLLM2_DIGEST not in "".join(s.iter_text())
    local = target.post(key, {"model": "smol", "messages": ASK, "max_tokens": 2}).json()
    assert local["system_fingerprint"] == SMOLLM2_DIGEST  # the label means what was verified


def test_an_upstream_reporting_negative_usage_refills_no_budget(target: Target) -> None:
    """usage.prompt_tokens = -1,000,000 was believed: the key's (and organisation's) budget went 2M
    tokens below zero, then the metrics counter raised outside the request's try and the client got an
    unaudited 500. Fix: upstream usage must be non-negative integers, else 502."""
    key, key_id = target.key("negative")
    r = target.post(key, {"model": "negative-usage", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 502, r.text
    assert target.budget_used(key_id) >= 0
    assert target.audit_entry(r.headers["x-request-id"])["status"] == 502
    bad = target.post(key, {"model": "bad-usage", "messages": ASK, "max_tokens": 2})
    assert bad.status_code == 502, bad.text  # a list as usage was an AttributeError: 500


def test_an_upstream_that_reports_no_usage_is_charged_its_reservation(target: Target) -> None:
    """No usage in the answer was charged as zero tokens: such an upstream was free for every budget.
    Fix: unknown usage charges the whole reservation (prompt bound + max_tokens)."""
    key, key_id = target.key("no-usage")
    r = target.post(key, {"model": "no-usage", "messages": ASK, "max_tokens": 50})
    assert r.status_code == 200, r.text
    assert target.budget_used(key_id) >= 50


def test_max_completion_tokens_cannot_outrun_the_reservation(target: Target) -> None:
    """max_tokens 1 reserved 1 token while the upstream (as OpenAI and vLLM do) obeyed
    max_completion_tokens: 30,000 and spent them, past a 20,000 budget. Fix: both are set to the larger."""
    key, key_id = target.key("max-completion")
    r = target.post(key, {"model": "honest", "messages": ASK, "max_tokens": 1, "max_completion_tokens": 30_000})
    assert r.status_code == 429, (r.status_code, target.budget_used(key_id))
    assert target.budget_used(key_id) <= BUDGET


def test_tool_definitions_count_against_the_reservation(target: Target) -> None:
    """Only message text was reserved: 100 KB of tool descriptions (25,000 prompt tokens upstream)
    passed on a reservation of about 50. Fix: every field that can reach the prompt is counted."""
    key, key_id = target.key("tools")
    tools = [{"type": "function", "function": {"name": "f", "description": "d" * 100_000}}]
    r = target.post(key, {"model": "honest", "messages": ASK, "max_tokens": 1, "tools": tools})
    assert r.status_code == 429, (r.status_code, target.budget_used(key_id))
    assert target.budget_used(key_id) <= BUDGET


def test_a_streamed_prompt_is_charged(target: Target) -> None:
    """A stream through an upstream charged one token per chunk and nothing for the prompt, unless the
    client itself asked for include_usage. Fix: the gateway asks the upstream for usage on every stream
    (and keeps that event from a client that did not ask), and charges the reservation when none comes."""
    key, key_id = target.key("stream")
    prompt = [{"role": "user", "content": "word " * 800}]  # 4 KB: about 1,000 prompt tokens upstream
    with httpx.stream("POST", target.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "honest", "messages": prompt, "max_tokens": 3, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert text.rstrip().endswith("[DONE]") and '"usage"' not in text  # the client did not ask for it
    assert target.budget_used(key_id) >= 1000


# -- withdrawals: lifted without the organisation key ---------------------------------------------------


def test_editing_a_withdrawal_does_not_lift_it(target: Target) -> None:
    """'UPDATE withdrawals SET target = ...' lifted a withdrawal: the withdrawal's own signature was never
    checked, only a restoration's. Fix: a withdrawal whose signature does not verify withdraws every
    deployment until the organisation restores it (as this test does at its end)."""
    key, _ = target.key("withdrawal")
    org = str(target.home / "org" / "signing-key.pem")
    assert target.post(key, {"model": "regulated", "messages": ASK, "max_tokens": 2}).status_code == 200
    made = target.bastion("withdraw", "--model", "regulated", "--reason", "regulator's letter", "--key", org,
                          "--json")
    assert made.returncode == 0, made.stdout + made.stderr
    assert target.post(key, {"model": "regulated", "messages": ASK, "max_tokens": 2}).status_code == 503
    with sqlite3.connect(target.home / "bastion.db") as conn:
        conn.execute("UPDATE withdrawals SET target = 'something-else'")
    edited = target.post(key, {"model": "regulated", "messages": ASK, "max_tokens": 2})
    assert edited.status_code == 503, "an edited withdrawal no longer covered the model it withdrew"
    assert target.post(key, {"model": "smol", "messages": ASK, "max_tokens": 2}).status_code == 503  # fail closed
    restored = target.bastion("restore", str(json.loads(made.stdout)["id"]), "--key", org)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert target.post(key, {"model": "smol", "messages": ASK, "max_tokens": 2}).status_code == 200


# -- attacks that failed (kept as regression guards) ----------------------------------------------------


def test_a_key_holder_is_no_administrator_and_every_refusal_is_audited(target: Target) -> None:
    """Held: admin endpoints, /metrics and health details refuse a plain key (admin_loopback off), each
    with an audit entry; an expired key is a 401, audited too."""
    key, _ = target.key("nosy")
    auth = {"Authorization": f"Bearer {key}"}
    for method, path in (("POST", "/admin/reload"), ("GET", "/admin/routes"), ("POST", "/admin/drill"),
                         ("GET", "/metrics")):
        r = httpx.request(method, target.base + path, headers=auth, json={"model": "smol", "down": True})
        assert r.status_code == 403, (path, r.text)
        assert target.audit_entry(r.headers["x-request-id"])["status"] == 403
    assert httpx.get(target.base + "/healthz", headers=auth).json() == {"status": "ok"}
    from datetime import UTC, datetime, timedelta

    expired = target.keys.create("leaver", ["*"], expires_at=datetime.now(UTC) - timedelta(seconds=1)).key
    r = target.post(expired, {"model": "smol", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 401 and "expired" in r.text
    assert target.audit_entry(r.headers["x-request-id"])["status"] == 401


def test_odd_bodies_are_400s_not_500s(target: Target) -> None:
    """Held: nulls, image parts, deep nesting, a non-object body and an unknown role are 400s."""
    key, _ = target.key("odd")
    for body in (
        {"model": "smol", "messages": [{"role": "user", "content": None}]},
        {"model": "smol", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"model": "smol", "messages": [{"role": "root", "content": "hi"}]},
        {"model": "smol", "messages": ASK, "n": 2},
        {"model": "smol", "messages": ASK, "max_tokens": 0},
        {"model": ["smol"], "messages": ASK},
    ):
        r = target.post(key, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    deep = httpx.post(target.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      content=b'{"model": "smol", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", timeout=60)
    assert deep.status_code == 400
    assert target.post(key, [1, 2]).status_code == 400  # type: ignore[arg-type]
