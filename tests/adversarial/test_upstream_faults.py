"""A dying upstream: 16 faults, each with the outcome a client must see, through a real gateway process.

Every faulty deployment falls back to the local SmolLM2. A fault before the first byte must never reach
the client (the fallback answers); a fault after bytes reached the client must end the stream with an
error event, never a clean ``[DONE]``. The same scenarios run against LiteLLM in bench/failover.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import free_port, serving
from tests.serve.fault_server import SCENARIOS, STREAMED, FaultServer, fault_server

ASK = [{"role": "user", "content": "Say fine."}]


def url_for(server: FaultServer, scenario: str) -> str:
    if scenario == "refused":
        return f"http://127.0.0.1:{free_port()}/v1"
    if scenario == "dns-failure":
        return "http://upstream.invalid/v1"
    return server.url(scenario)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, FaultServer]]:
    home: Path = tmp_path_factory.mktemp("faults")
    store = KeyStore(home / "bastion.db")
    key = store.create("client", ["*"]).key
    store.close()
    with fault_server() as server:
        models = "".join(
            f"""
[[models]]
name = "{s}"
backend = "openai"
url = "{url_for(server, s)}"
upstream_model = "up"
fallbacks = ["smol"]
timeout_s = 4
first_byte_timeout_s = 2
max_response_bytes = 1000000
"""
            for s in SCENARIOS
        )
        config = models + '\n[[models]]\nname = "smol"\npath = "bundled:smollm2"\nn_threads = 1\n'
        with serving(home, config, {"smol": "bundled:smollm2"}) as base:
            yield base, key, server


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in STREAMED])
def test_a_fault_before_the_first_byte_is_never_seen_by_the_client(
    gw: tuple[str, str, FaultServer], scenario: str
) -> None:
    base, key, server = gw
    r = httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                   json={"model": scenario, "messages": ASK, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    answered = r.headers["x-bastion-model"]
    assert answered == (scenario if scenario == "ok" else "smol"), (scenario, answered, r.text[:300])
    r.json()  # always a JSON answer
    if scenario == "redirect":
        assert server.received.get("steal") is None


@pytest.mark.parametrize("scenario", sorted(STREAMED))
def test_a_stream_cut_after_bytes_ends_with_an_error_event(gw: tuple[str, str, FaultServer], scenario: str) -> None:
    base, key, _ = gw
    with httpx.stream("POST", base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      timeout=60, json={"model": scenario, "messages": ASK, "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert "the answer" not in text or '"error"' in text
    assert '"error"' in text and "[DONE]" not in text, text[-400:]
