"""Evaluating a model served by Bastion's own gateway: the run records the digest the gateway reports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serve.conftest import admit_all

from bastion.bundled import smollm2
from bastion.evals import OpenAIBackend, RunOptions, run_eval
from bastion.hashing import file_digest
from bastion.keys import KeyStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("gw")
    port = _free_port()
    config = home / "bastion.toml"
    config.write_text(f'[server]\nport = {port}\n\n[store]\npath = "{home / "bastion.db"}"\n\n'
                      '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 2\n')
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    # Served models must be admitted, and the gateway records every request: set both up as an operator would.
    admit_all(home, {"smollm2": "bundled:smollm2"})
    subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init"], env=env, check=True,
                   capture_output=True)
    store = KeyStore(home / "bastion.db")
    key = store.create("evaluator", ["smollm2"]).key
    store.close()
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(config)],
                                stdout=fh, stderr=fh, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"bastion serve did not start: {Path(log).read_text()[-2000:]}")
                time.sleep(0.5)
        yield base + "/v1", key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_run_against_bastion_serve_records_the_served_weights_digest(gateway: tuple[str, str]) -> None:
    url, key = gateway
    backend = OpenAIBackend(url, api_key=key, model="smollm2")
    run, items = run_eval(backend, RunOptions(tasks=("arc_easy",), limit=1, scoring="auto"))
    # Whatever the gateway supports, the scoring mode is recorded, never silently at chance.
    assert run.settings["scoring_resolved"] == ("loglikelihood" if backend.info.loglikelihood else "generative")
    assert run.model_digest == file_digest(smollm2())
    assert len(items) == 1
