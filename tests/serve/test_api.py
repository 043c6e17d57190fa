"""The gateway through the official OpenAI SDK, against the real bundled models."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from tests.serve.conftest import Gateway

SMOL_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA_DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def client(gw: Gateway, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=gw.v1, api_key=key or gw.admin_key, max_retries=0, timeout=120)


def test_models_list_shows_only_the_models_the_key_may_call(gateway: Gateway) -> None:
    everything = {m.id for m in client(gateway).models.list()}
    assert {"smollm2", "gemma3", "upstream", "dead"} <= everything
    assert {m.id for m in client(gateway, gateway.smol_only_key).models.list()} == {"smollm2"}


def test_chat_completion_answers_and_names_the_exact_weights(gateway: Gateway) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="smollm2", messages=FRANCE, max_tokens=16, temperature=0
    )
    completion = raw.parse()
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.model == "smollm2"
    assert raw.headers["x-bastion-model-digest"] == SMOL_DIGEST
    assert completion.system_fingerprint == SMOL_DIGEST
    assert completion.usage is not None and completion.usage.prompt_tokens > 10
    assert 0 < completion.usage.completion_tokens <= 16


def test_chat_stream_yields_tokens_as_they_are_made_and_reports_usage(gateway: Gateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="smollm2",
            messages=FRANCE,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3  # token by token, not one blob
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(content_chunks)


def test_stop_sequence_and_max_tokens_are_honoured(gateway: Gateway) -> None:
    c = client(gateway)
    stopped = c.chat.completions.create(
        model="smollm2", messages=FRANCE, max_tokens=32, temperature=0, stop=["Paris"]
    )
    assert "Paris" not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"
    short = c.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5,
        temperature=0,
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 5


def test_same_seed_gives_the_same_sample(gateway: Gateway) -> None:
    c = client(gateway)
    ask = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Invent a name for a cat."}],
        "max_tokens": 12,
        "temperature": 1.0,
    }
    a = c.chat.completions.create(**ask, seed=1234).choices[0].message.content  # type: ignore[call-overload]
    b = c.chat.completions.create(**ask, seed=1234).choices[0].message.content  # type: ignore[call-overload]
    assert a == b


def test_json_schema_response_format_constrains_the_output(gateway: Gateway) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    completion = client(gateway).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
        max_tokens=64,
        temperature=0,
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert set(data) == {"city", "country"}


def test_text_completion_on_gemma3_base_model(gateway: Gateway) -> None:
    raw = client(gateway).completions.with_raw_response.create(
        model="gemma3", prompt="Q: What is the capital of France?\nA:", max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert "Paris" in completion.choices[0].text
    assert raw.headers["x-bastion-model-digest"] == GEMMA_DIGEST


def test_gemma3_chat_uses_the_template_set_in_the_configuration(gateway: Gateway) -> None:
    completion = client(gateway).chat.completions.create(
        model="gemma3", messages=FRANCE, max_tokens=8, temperature=0
    )
    assert completion.model == "gemma3"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_streamed_text_completion(gateway: Gateway) -> None:
    pieces = [
        c.choices[0].text
        for c in client(gateway).completions.create(
            model="gemma3", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True
        )
        if c.choices
    ]
    assert len(pieces) >= 3 and "".join(pieces).strip()


def test_upstream_backend_passes_chat_and_streams_through(gateway: Gateway) -> None:
    c = client(gateway)
    answer = c.chat.completions.create(model="upstream", messages=FRANCE, max_tokens=16, temperature=0)
    assert answer.model == "upstream"
    assert "Paris" in (answer.choices[0].message.content or "")
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model="upstream", messages=FRANCE, max_tokens=16, temperature=0, stream=True
        )
        if ch.choices
    )
    assert "Paris" in streamed


def test_down_upstream_falls_back_to_the_next_model(gateway: Gateway) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="dead-with-fallback", messages=FRANCE, max_tokens=8, temperature=0
    )
    assert raw.headers["x-bastion-model"] == "smollm2"
    assert raw.headers["x-bastion-model-digest"] == SMOL_DIGEST
    assert raw.parse().choices[0].message.content


def test_sdk_raises_the_right_exception_classes(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "bst_000000000000_nope").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(gateway, gateway.revoked_key).chat.completions.create(model="smollm2", messages=FRANCE)
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, gateway.smol_only_key).chat.completions.create(model="gemma3", messages=FRANCE)
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(model="no-such-model", messages=FRANCE)
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).chat.completions.create(model="smollm2", messages=FRANCE, temperature=7)
    assert "temperature" in str(bad.value)
    with pytest.raises(openai.InternalServerError) as down:
        client(gateway).chat.completions.create(model="dead", messages=FRANCE)
    assert down.value.status_code == 503


def test_health_metrics_and_openapi(gateway: Gateway) -> None:
    health = httpx.get(gateway.base + "/healthz").json()
    assert health["models"]["smollm2"]["healthy"] is True
    assert health["models"]["dead"]["healthy"] is False
    client(gateway).chat.completions.create(model="smollm2", messages=FRANCE, max_tokens=4)
    metrics = httpx.get(gateway.base + "/metrics").text
    assert 'bastion_requests_total{endpoint="chat",model="smollm2",status="200"}' in metrics
    assert 'bastion_request_duration_seconds_bucket{endpoint="chat",le="0.5",model="smollm2"}' in metrics
    assert 'bastion_tokens_total{direction="out",model="smollm2"}' in metrics
    spec = httpx.get(gateway.base + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"} <= set(spec["paths"])
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
