"""Every error path answers with the same OpenAI error envelope and the right status."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.serve.conftest import Gateway

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def assert_envelope(r: httpx.Response, status: int, param: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]  # type: ignore[no-any-return]


def post(gw: Gateway, path: str, key: str | None, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.v1 + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "status", "param"),
    [
        ("no key", 401, None),
        ("bad key", 401, None),
        ("model not allowed", 403, "model"),
        ("unknown model", 404, "model"),
        ("not json", 400, None),
        ("missing messages", 400, "messages"),
        ("bad role", 400, "messages.0.role"),
        ("too large", 413, None),
        ("backend down", 503, None),
        ("embeddings on a chat model", 400, "model"),
    ],
)
def test_error_envelope(gateway: Gateway, case: str, status: int, param: str | None) -> None:
    admin = gateway.admin_key
    r = {
        "no key": lambda: post(gateway, "/chat/completions", None, json=CHAT),
        "bad key": lambda: post(gateway, "/chat/completions", "bst_0_x", json=CHAT),
        "model not allowed": lambda: post(
            gateway, "/chat/completions", gateway.smol_only_key, json={**CHAT, "model": "gemma3"}
        ),
        "unknown model": lambda: post(gateway, "/chat/completions", admin, json={**CHAT, "model": "nope"}),
        "not json": lambda: post(gateway, "/chat/completions", admin, content=b"{not json"),
        "missing messages": lambda: post(gateway, "/chat/completions", admin, json={"model": "smollm2"}),
        "bad role": lambda: post(
            gateway,
            "/chat/completions",
            admin,
            json={**CHAT, "messages": [{"role": "wizard", "content": "x"}]},
        ),
        "too large": lambda: post(
            gateway,
            "/chat/completions",
            admin,
            json={**CHAT, "messages": [{"role": "user", "content": "x" * 70000}]},
        ),
        "backend down": lambda: post(gateway, "/chat/completions", admin, json={**CHAT, "model": "dead"}),
        "embeddings on a chat model": lambda: post(
            gateway, "/embeddings", admin, json={"model": "smollm2", "input": "hello"}
        ),
    }[case]()
    assert_envelope(r, status, param)


def test_unknown_route_and_wrong_method_use_the_envelope(gateway: Gateway) -> None:
    assert_envelope(httpx.get(gateway.base + "/v1/nothing-here"), 404)
    assert_envelope(httpx.get(gateway.v1 + "/chat/completions"), 405)


def test_full_queue_answers_429_at_once(gateway: Gateway) -> None:
    body = {
        "model": "smollm2-q0",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 48,
        "temperature": 0,
    }
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(
            pool.map(lambda _: post(gateway, "/chat/completions", gateway.admin_key, json=body), range(4))
        )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    for r in responses:
        if r.status_code == 429:
            assert_envelope(r, 429)


def test_client_disconnect_stops_generation(gateway: Gateway) -> None:
    def tokens_out() -> float:
        for line in httpx.get(gateway.base + "/metrics").text.splitlines():
            if line.startswith('bastion_tokens_total{direction="out",model="smollm2-q0"}'):
                return float(line.split()[-1])
        return 0.0

    before = tokens_out()
    body = {
        "model": "smollm2-q0",
        "messages": [{"role": "user", "content": "Count to one thousand."}],
        "max_tokens": 1500,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        gateway.v1 + "/chat/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    ) as r:
        assert r.status_code == 200
        for i, _line in enumerate(r.iter_lines()):
            if i > 6:
                break  # hang up mid-stream
    # The slot frees once the worker notices; the next request on this max_queue=0 model then succeeds.
    follow = None
    for _ in range(50):
        follow = post(
            gateway, "/chat/completions", gateway.admin_key, json={**body, "stream": False, "max_tokens": 2}
        )
        if follow.status_code != 429:
            break
    assert follow is not None and follow.status_code == 200
    metrics = httpx.get(gateway.base + "/metrics").text
    assert 'bastion_requests_total{endpoint="chat",model="smollm2-q0",status="499"}' in metrics
    assert tokens_out() - before < 200  # far fewer than the 1500 asked for
