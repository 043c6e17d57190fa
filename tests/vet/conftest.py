"""Shared fixtures: the crafted corpus is built once per session (it needs a real torch.save)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vet.corpus import Case, build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("corpus")
    return {c.name: c for c in build_corpus(root)}


@pytest.fixture(scope="session")
def corpus_dir(corpus: dict[str, Case]) -> Path:
    return next(iter(corpus.values())).path.parent
