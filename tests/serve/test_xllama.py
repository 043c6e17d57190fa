"""The xllamacpp engine behind the gateway: real bundled SmolLM2, real HTTP, real llama.cpp server loop.

One gateway serves the same admitted GGUF twice: "smol-xl" with xllamacpp (4 slots) and "smol-lcp" with
llama-cpp-python (one request at a time), so the parallelism assertion has its own control: the same
measurement must show no overlap on the one-at-a-time engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from bastion.config import ModelSettings
from bastion.errors import Busy
from bastion.keys import KeyStore
from bastion.serve.backends import Cancel, Usage
from bastion.serve.backends.xllama import XllamaBackend
from tests.serve.conftest import serving

SMOL = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
STORY = "Write a long story about a dragon who learns to bake bread."


@dataclass(frozen=True)
class Served:
    v1: str
    key: str
    home: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("xllama")
    local = 'path = "bundled:smollm2"\nn_threads = 1\nn_ctx = 512\n'
    config = (
        f'[registry]\npublic_key = "{home}/org/signing-key.pub.pem"\n\n'
        f'[[models]]\nname = "smol-xl"\nengine = "xllamacpp"\nparallel = 4\n{local}\n'
        f'[[models]]\nname = "smol-lcp"\n{local}'
    )
    with serving(home, config, admit={"smol-xl": "bundled:smollm2", "smol-lcp": "bundled:smollm2"}) as base:
        store = KeyStore(home / "bastion.db")
        key = store.create("ops", ["*"]).key
        store.close()
        yield Served(base + "/v1", key, home)


def chat(s: Served, model: str, **extra: object) -> httpx.Response:
    return httpx.post(
        s.v1 + "/chat/completions",
        json={"model": model, "messages": CAPITAL, "max_tokens": 16, "temperature": 0, **extra},
        headers={"Authorization": f"Bearer {s.key}"},
        timeout=300,
    )


@pytest.mark.slow
def test_the_gateway_answers_with_xllamacpp_labelled_with_the_admitted_digest(served: Served) -> None:
    resp = chat(served, "smol-xl")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert resp.headers["x-bastion-model-digest"] == SMOL
    assert body["system_fingerprint"] == SMOL
    assert body["model"] == "smol-xl"
    assert "timings" not in body  # llama.cpp's internals stay inside
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["usage"]["prompt_tokens"] > 0


@pytest.mark.slow
def test_greedy_answers_are_the_same_on_both_engines(served: Served) -> None:
    xl = chat(served, "smol-xl").json()["choices"][0]["message"]["content"]
    lcp = chat(served, "smol-lcp").json()["choices"][0]["message"]["content"]
    assert xl == lcp


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_400_naming_the_model(served: Served) -> None:
    resp = httpx.post(
        served.v1 + "/completions",
        json={"model": "smol-xl", "prompt": "word " * 2000, "max_tokens": 4},
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=300,
    )
    assert resp.status_code == 400, resp.text
    assert "smol-xl" in resp.json()["error"]["message"]


async def token_window(client: httpx.AsyncClient, model: str, i: int) -> tuple[float, float, int]:
    """(first token, last token, tokens) of one streamed completion, on the monotonic clock."""
    body = {"model": model, "prompt": f"{STORY} Chapter {i}:", "max_tokens": 24, "temperature": 0,
            "stream": True}
    first = last = 0.0
    n = 0
    async with client.stream("POST", "/completions", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                last = time.monotonic()
                first = first or last
                n += 1
    return first, last, n


async def windows(s: Served, model: str, n: int) -> list[tuple[float, float, int]]:
    async with httpx.AsyncClient(base_url=s.v1, headers={"Authorization": f"Bearer {s.key}"},
                                 timeout=600) as client:
        return await asyncio.gather(*(token_window(client, model, i) for i in range(n)))


def overlapping_pairs(spans: list[tuple[float, float, int]]) -> int:
    """Pairs of streams that were both producing tokens at some moment."""
    return sum(
        1
        for i, (a0, a1, _) in enumerate(spans)
        for (b0, b1, _) in spans[i + 1 :]
        if a0 < b1 and b0 < a1
    )


@pytest.mark.slow
def test_concurrent_streams_are_generated_together_not_one_after_another(served: Served) -> None:
    spans = asyncio.run(windows(served, "smol-xl", 3))
    assert all(n >= 3 for _, _, n in spans), spans  # each stream produced several tokens
    assert overlapping_pairs(spans) == 3, spans  # every pair was generating at the same time

    # Control: the one-at-a-time engine, measured the same way, never overlaps.
    serial = asyncio.run(windows(served, "smol-lcp", 3))
    assert all(n >= 3 for _, _, n in serial), serial
    assert overlapping_pairs(serial) == 0, serial


@pytest.mark.slow
def test_past_the_slots_and_the_queue_it_is_busy_and_a_closed_stream_frees_its_slot() -> None:
    async def go() -> tuple[bytes, str]:
        backend = XllamaBackend(ModelSettings(name="smol", path="bundled:smollm2", n_ctx=256, n_threads=1,
                                              parallel=1, max_queue=0))
        await backend.start()
        try:
            long = {"prompt": STORY, "max_tokens": 200, "temperature": 0}
            stream = backend.stream("completion", long, Cancel(), Usage())
            first = await stream.__anext__()  # the one slot is generating
            with pytest.raises(Busy):
                await backend.run("completion", long, Cancel())
            await stream.aclose()  # the client left: generation stops, the slot is free again
            reply = await backend.run("completion", {"prompt": "The capital of France is", "max_tokens": 4,
                                                     "temperature": 0}, Cancel())
            return first, str(orjson.loads(reply.body)["choices"][0]["text"])
        finally:
            await backend.aclose()

    first, text = asyncio.run(go())
    assert orjson.loads(first)["model"] == "smol"
    assert "Paris" in text
