"""The OpenAI-compatible backend against a real llama.cpp server on 127.0.0.1 (llama-cpp-python's own).

One server, two model aliases of the same SmolLM2 file: one returns prompt log-probs (logits_all), one
does not -- the second is exactly the case that silently scores at chance in other tools.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.bundled import smollm2
from bastion.errors import BackendUnavailable, UsageError
from bastion.evals import LlamaBackend, OpenAIBackend, RunOptions, run_eval

KEY = "sk-test-evals"
CTX = "Question: What is the capital of France?\nAnswer:"
CHOICES = [" Paris", " a small green banana"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    base = {"model": str(smollm2()), "n_ctx": 512, "n_threads": 2, "verbose": False}
    cfg = {"host": "127.0.0.1", "port": port, "api_key": KEY,
           "models": [{**base, "model_alias": "smol-logprobs", "logits_all": True},
                      {**base, "model_alias": "smol-chat", "logits_all": False}]}
    path = tmp_path_factory.mktemp("server") / "config.json"
    path.write_text(json.dumps(cfg))
    log = (path.parent / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(path)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                req = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {KEY}"})
                urllib.request.urlopen(req, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {Path(log.name).read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_preflight_detects_prompt_logprobs_and_scores_like_embedded(server: str, smol: LlamaBackend) -> None:
    remote = OpenAIBackend(server, api_key=KEY, model="smol-logprobs")
    assert remote.info.loglikelihood and remote.info.digest is None  # llama_cpp.server reports no digest
    got = remote.loglikelihoods(CTX, CHOICES)
    # llama-cpp-python 0.3.36's echo log-probs are not the model's logits (they disagree with both
    # llama_decode and Llama.eval+scores, e.g. ':' after 'Question' -11.1 vs -6.26), so we check
    # the client's arithmetic (negative sums over the continuation only) and the ranking, not equality.
    embedded = smol.loglikelihoods(CTX, CHOICES)
    assert all(v < 0 for v in got) and got[0] > got[1] and embedded[0] > embedded[1]
    assert got != remote.loglikelihoods("Question: What is the capital of Spain?\nAnswer:", CHOICES)


@pytest.mark.slow
def test_server_without_prompt_logprobs_is_never_scored_at_chance(server: str) -> None:
    remote = OpenAIBackend(server, api_key=KEY, model="smol-chat")
    assert not remote.info.loglikelihood
    with pytest.raises(BackendUnavailable) as exc:
        run_eval(remote, RunOptions(tasks=("arc_easy",), limit=1, scoring="loglikelihood"))
    assert "chance" in exc.value.message
    run, items = run_eval(remote, RunOptions(tasks=("arc_easy",), limit=1, scoring="auto"))
    assert run.settings["scoring_resolved"] == "generative"
    assert run.summaries[0].scoring == "generative" and len(items) == 1
    assert "response" in items[0].output


@pytest.mark.slow
def test_wrong_api_key_is_a_clear_error(server: str) -> None:
    with pytest.raises(BackendUnavailable) as exc:
        OpenAIBackend(server, api_key="wrong", model="smol-chat")
    assert "401" in exc.value.message


def test_non_http_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        OpenAIBackend("file:///etc/passwd")


def test_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1", timeout=2)
