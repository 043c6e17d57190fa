"""A dying upstream: 16 faults, each with the outcome a client must see, through a real gateway process.

Every faulty deployment falls back to the local SmolLM2. A fault before the first byte must never reach
the client (the fallback answers); a fault after bytes reached the client must end the stream with an
error event, never a clean ``[DONE]``. The outcomes and their judge are in tests/serve/fault_outcomes.py,
shared with bench/fault_suite.py, which runs the same scenarios against the LiteLLM proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import serving
from tests.serve.fault_outcomes import FIRST_BYTE_TIMEOUT_S, MAX_RESPONSE_BYTES, TIMEOUT_S, judge, run
from tests.serve.fault_server import SCENARIOS, STREAMED, FaultServer, fault_server


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
url = "{server.url(s)}"
upstream_model = "up"
fallbacks = ["smol"]
timeout_s = {TIMEOUT_S}
first_byte_timeout_s = {FIRST_BYTE_TIMEOUT_S}
max_response_bytes = {MAX_RESPONSE_BYTES}
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
    seen = run(base + "/v1", key, scenario)
    verdict = judge(scenario, seen, server.received)
    assert verdict.passed, (verdict.why, seen)
    assert seen.status == 200 and verdict.why == "SSE error event, no [DONE]", verdict  # Bastion's own way
