"""Shared fixtures for the evals tests: the built data, one loaded SmolLM2 per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bastion.bundled import smollm2
from bastion.evals import LlamaBackend, eval_data_dir


@pytest.fixture(scope="session", autouse=True)
def _eval_data_built() -> None:
    if not (eval_data_dir() / "manifest.json").is_file():
        pytest.fail("evaluation data is not built: run 'make eval-data' (scripts/build_eval_data.py)")


@pytest.fixture(scope="session")
def smol() -> Iterator[LlamaBackend]:
    backend = LlamaBackend(smollm2(), name="smollm2", n_ctx=1024)
    yield backend
    backend.close()
