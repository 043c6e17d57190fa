"""Finding 14: the upstream client followed redirects (a 307 re-posted the prompt to another port),
forwarded every field a client sent, and read upstream answers of any size.

A real gateway process talks to real HTTP servers on 127.0.0.1 (they stand in for remote upstreams):
one that answers ``/models`` but redirects every completion, one that records whatever reaches it, and
one that answers far too much, as one body or as an endless stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import free_port, stop, wait_http

ANSWER = json.dumps(
    {
        "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()  # fmt: skip
CAP = 1_048_576  # max_response_bytes of the "fat" models
AUDIT_ENV: dict[str, str] = {}  # the gateway's environment, for reading its audit log


class Upstreams:
    """Three upstream servers in this process; ``received`` holds every POST body the recorder got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.recorder = self._serve(self._recorder_handler())
        self.redirector = self._serve(self._redirect_handler(self.recorder.server_address[1]))
        self.fat = self._serve(self._fat_handler())

    @staticmethod
    def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def url(self, server: ThreadingHTTPServer) -> str:
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    def close(self) -> None:
        for server in (self.recorder, self.redirector, self.fat):
            server.shutdown()
            server.server_close()

    def _recorder_handler(self) -> type[BaseHTTPRequestHandler]:
        received = self.received

        class Recorder(_Quiet):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body)
                self.answer(200, json.dumps({**json.loads(ANSWER), "model": body.get("model")}).encode())

        return Recorder

    @staticmethod
    def _redirect_handler(target_port: int) -> type[BaseHTTPRequestHandler]:
        class Redirector(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(307)  # 307 keeps the method and body: the prompt would be re-posted
                self.send_header("Location", f"http://127.0.0.1:{target_port}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Redirector

    @staticmethod
    def _fat_handler() -> type[BaseHTTPRequestHandler]:
        class Fat(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                filler = "x" * 65_536
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = {"choices": [{"index": 0, "delta": {"content": filler}}]}
                    try:
                        for _ in range(64):  # 4 MiB in all, then [DONE]: bounded even if nothing cuts it
                            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        self.wfile.write(b"data: [DONE]\n\n")
                    except OSError:
                        pass  # the gateway hung up: what a capped client does
                    return
                doc = {**json.loads(ANSWER), "model": body.get("model")}
                doc["choices"][0]["message"]["content"] = filler * 48  # 3 MiB
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if self.path.endswith("/chat/completions"):
                    self.send_header("Content-Length", str(len(data)))
                else:  # no length: the size is only known by reading it
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        return Fat


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - health checks pass: the upstream looks healthy
        self.answer(200, b'{"object":"list","data":[{"id":"up","object":"model"}]}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Upstreams]]:
    ups = Upstreams()
    home = tmp_path_factory.mktemp("upstream-gw")
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n'
        f'[audit]\nsigning_key = "{home}-keys/audit.key"\nbody_key = "{home}-keys/body.key"\n'
        f'[[models]]\nname = "redirected"\nbackend = "openai"\nurl = "{ups.url(ups.redirector)}"\n'
        f'[[models]]\nname = "recorded"\nbackend = "openai"\nurl = "{ups.url(ups.recorder)}"\n'
        f'[[models]]\nname = "fat"\nbackend = "openai"\nurl = "{ups.url(ups.fat)}"\nmax_response_bytes = {CAP}\n'
    )
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1", "BASTION_CONFIG": str(config)}
    AUDIT_ENV.clear()
    AUDIT_ENV.update(env)
    cli = [sys.executable, "-m", "bastion.cli.main"]
    subprocess.run([*cli, "audit", "init", "-c", str(config)], env=env, check=True, capture_output=True)
    store = KeyStore(home / "bastion.db")
    key = store.create("ops", ["*"]).key
    store.close()
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([*cli, "serve", "-c", str(config)], env=env, stdout=fh, stderr=fh)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc, log)
        yield base + "/v1", key, ups
    finally:
        stop(proc)
        ups.close()


def chat(stack: tuple[str, str, Upstreams], model: str, **extra: Any) -> httpx.Response:
    v1, key, _ = stack
    body = {"model": model, "messages": [{"role": "user", "content": "the secret plan"}], **extra}
    return httpx.post(v1 + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_a_redirect_is_never_followed_and_the_prompt_goes_nowhere_else(stack: tuple[str, str, Upstreams]) -> None:
    ups = stack[2]
    before = len(ups.received)
    r = chat(stack, "redirected")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_upstream_response" and "redirect" in error["message"]
    streamed = chat(stack, "redirected", stream=True)
    assert streamed.status_code == 502
    assert len(ups.received) == before, f"the prompt was re-posted: {ups.received[before:]}"


def test_only_allow_listed_fields_reach_the_upstream(stack: tuple[str, str, Upstreams]) -> None:
    ups = stack[2]
    r = chat(
        stack, "recorded", temperature=0.5, max_tokens=7, user="alice@example.org",
        guided_json={"type": "object"}, api_base="http://192.0.2.1/", n_probs=5,
        messages=[{"role": "user", "content": "hi", "x_trace": "internal", "name": "alice"}],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    sent = ups.received[-1]
    assert set(sent) == {"model", "messages", "temperature", "max_tokens"}
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 7
    assert sent["messages"] == [{"role": "user", "content": "hi", "name": "alice"}]


@pytest.mark.parametrize("endpoint", ["/chat/completions", "/completions"])
def test_an_oversized_upstream_answer_is_a_502_with_or_without_a_length(
    stack: tuple[str, str, Upstreams], endpoint: str
) -> None:
    v1, key, _ = stack
    body: dict[str, Any] = {"model": "fat", "max_tokens": 5}
    body |= {"messages": [{"role": "user", "content": "hi"}]} if endpoint == "/chat/completions" else {"prompt": "hi"}
    r = httpx.post(v1 + endpoint, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 502, r.text[:200]
    assert r.json()["error"]["code"] == "bad_upstream_response"
    assert f"larger than {CAP} bytes" in r.json()["error"]["message"]


def test_an_oversized_stream_is_cut_off_with_an_error_event(stack: tuple[str, str, Upstreams]) -> None:
    v1, key, _ = stack
    body = {"model": "fat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    received = 0
    events: list[str] = []
    with httpx.stream(
        "POST", v1 + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            received += len(line)
            if line.startswith("data:") and line != "data: [DONE]":
                events.append(line)
    assert received < 2 * CAP
    last = json.loads(events[-1][5:])
    assert last["error"]["code"] == "bad_upstream_response" and "stream" in last["error"]["message"]


def test_the_refusals_are_audited(stack: tuple[str, str, Upstreams]) -> None:
    assert chat(stack, "redirected").status_code == 502
    found = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "audit", "search", "--model", "redirected", "--json"],
        env=AUDIT_ENV, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    statuses = {e["status"] for e in json.loads(found.stdout)}
    assert statuses == {502}
