"""A dying upstream: 16 faults, each with the outcome a client must see, through a real gateway process.

Every faulty deployment falls back to the local SmolLM2. A fault before the first byte must never reach
the client (the fallback answers); a fault after bytes reached the client must end the stream with an
error event, never a clean ``[DONE]``. The outcomes and their judge are in tests/serve/fault_outcomes.py,
shared with bench/fault_suite.py, which runs the same scenarios against the LiteLLM proxy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import serving
from tests.serve.fault_outcomes import ASK, FIRST_BYTE_TIMEOUT_S, MAX_RESPONSE_BYTES, TIMEOUT_S, judge, run
from tests.serve.fault_server import RETRIED, SCENARIOS, STREAMED, FaultServer, fault_server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def gw(home: Path) -> Iterator[tuple[str, str, FaultServer]]:
    store = KeyStore(home / "bastion.db")
    key = store.create("client", ["*"]).key
    store.close()
    with fault_server() as server:
        models = "".join(
            f"""
[[models]]
name = "{s}"
backend = "openai"
url = "{server.url(s)}"
upstream_model = "up"
fallbacks = ["smol"]
timeout_s = {TIMEOUT_S}
first_byte_timeout_s = {FIRST_BYTE_TIMEOUT_S}
max_response_bytes = {MAX_RESPONSE_BYTES}
"""
            for s in [*SCENARIOS, *RETRIED]
        )
        config = models + '\n[[models]]\nname = "smol"\npath = "bundled:smollm2"\nn_threads = 1\n'
        with serving(home, config, {"smol": "bundled:smollm2"}) as base:
            yield base, key, server


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in STREAMED])
def test_a_fault_before_the_first_byte_is_never_seen_by_the_client(
    gw: tuple[str, str, FaultServer], scenario: str
) -> None:
    base, key, server = gw
    seen = run(base + "/v1", key, scenario)
    verdict = judge(scenario, seen, server.received)
    assert verdict.passed, (verdict.why, seen)
    assert seen.headers is not None
    if scenario == "hang-keepalive":  # Bastion pools upstream connections: the silent one is met
        assert "hung" in verdict.why and seen.headers["x-bastion-model"] in (scenario, "smol"), verdict
    else:
        assert seen.headers["x-bastion-model"] == (scenario if scenario == "ok" else "smol")


@pytest.mark.parametrize("scenario", sorted(STREAMED))
def test_a_stream_cut_after_bytes_ends_with_an_error_event(gw: tuple[str, str, FaultServer], scenario: str) -> None:
    base, key, server = gw
    before = server.received.get(scenario, 0)
    seen = run(base + "/v1", key, scenario)
    verdict = judge(scenario, seen, server.received)
    assert verdict.passed, (verdict.why, seen)
    assert seen.status == 200 and verdict.why == "SSE error event, no [DONE]", verdict  # Bastion's own way
    assert server.received[scenario] == before + 1  # bytes reached the client: never sent again


def ask(base: str, key: str, model: str, stream: bool = False) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                      json={"model": model, "messages": ASK, "max_tokens": 4, "stream": stream})


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("scenario", sorted(RETRIED))
def test_a_transient_failure_is_retried_at_the_same_upstream(
    gw: tuple[str, str, FaultServer], home: Path, scenario: str, stream: bool
) -> None:
    base, key, server = gw
    before = server.received.get(scenario, 0)
    assert before % 2 == 0  # the next request fails once
    r = ask(base, key, scenario, stream)
    assert r.status_code == 200, r.text
    assert r.headers["x-bastion-model"] == scenario  # the upstream answered on the retry, not the fallback
    assert server.received[scenario] == before + 2
    assert '"error"' not in r.text
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys"}
    found = subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "search", "--json", "--model",
                            scenario, "--limit", "1", "--config", str(home / "bastion.toml")],
                           capture_output=True, text=True, env=env, timeout=120, check=True)
    assert f'"request_id": "{r.headers["x-request-id"]}"' in found.stdout.replace('":"', '": "')
    outcomes = re.findall(r'"outcome":\s*"([a-z_]+)"', found.stdout)
    assert outcomes == [
        "upstream_rate_limited" if scenario == "flaky-429" else "backend_unavailable", "answered"]


@pytest.mark.parametrize("scenario", ["no-headers", "slow-first-byte"])
def test_a_timeout_is_not_retried(gw: tuple[str, str, FaultServer], scenario: str) -> None:
    # it already spent first_byte_timeout_s: a retry would double the wait before the fallback answers
    base, key, server = gw
    before = server.received.get(scenario, 0)
    r = ask(base, key, scenario)
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
    assert server.received.get(scenario, 0) - before <= 1


def test_a_retry_after_longer_than_the_cap_is_not_waited_for(gw: tuple[str, str, FaultServer]) -> None:
    base, key, server = gw
    before = server.received.get("http-429", 0)
    r = ask(base, key, "http-429")
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "smol"
    assert server.received.get("http-429", 0) - before <= 1  # one attempt (none once its circuit is open)
