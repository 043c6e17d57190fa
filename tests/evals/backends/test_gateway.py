"""Evaluating a model served by Bastion's own gateway: the run records the digest the gateway reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.serve.conftest import serving

from bastion.bundled import smollm2
from bastion.evals import OpenAIBackend, RunOptions, run_eval
from bastion.hashing import file_digest
from bastion.keys import KeyStore


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("gw")
    store = KeyStore(home / "bastion.db")
    key = store.create("evaluator", ["smollm2"]).key
    store.close()
    # Served models must be admitted, and the gateway records every request: set both up as an operator would.
    with serving(home, '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 2\n',
                 {"smollm2": "bundled:smollm2"}) as base:
        yield base + "/v1", key


@pytest.mark.slow
def test_run_against_bastion_serve_records_the_served_weights_digest(gateway: tuple[str, str]) -> None:
    url, key = gateway
    backend = OpenAIBackend(url, api_key=key, model="smollm2")
    run, items = run_eval(backend, RunOptions(tasks=("arc_easy",), limit=1, scoring="auto"))
    # Whatever the gateway supports, the scoring mode is recorded, never silently at chance.
    assert run.settings["scoring_resolved"] == ("loglikelihood" if backend.info.loglikelihood else "generative")
    assert run.model_digest == file_digest(smollm2())
    assert len(items) == 1
