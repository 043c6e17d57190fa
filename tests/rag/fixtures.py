"""The test corpus, ingested once per session with the real all-MiniLM-L6-v2 (expensive: shared)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bastion.rag import RagStore
from tests.rag.corpus import Doc, build_docs, config_text, embedder, write_corpus


@dataclass
class Corpus:
    """The ingested corpus: its documents, the store, and the folder they came from."""

    docs: list[Doc]
    store: RagStore
    root: Path
    ids: dict[str, str]  # relpath -> document id


def open_corpus(tmp: Path, docs: list[Doc], *, only_unrestricted: bool = False) -> Corpus:
    """Write ``docs`` under ``tmp`` and ingest them into collection ``kb`` of a new store."""
    root = tmp / "docs"
    write_corpus(root, docs, only_unrestricted=only_unrestricted)
    config = tmp / "bastion.toml"
    config.write_text(config_text(tmp / "rag.db"))
    store = RagStore.open(config, embedder=embedder())
    store.create_collection("kb", "test corpus")
    report = store.ingest("kb", root)
    assert not report.failed, [f.error for f in report.failed]
    ids = {str(Path(f.path).relative_to(root)): f.document_id or "" for f in report.files}
    return Corpus(docs, store, root, ids)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    c = open_corpus(tmp_path_factory.mktemp("rag-corpus"), build_docs())
    yield c
    c.store.close()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """The same corpus without its restricted documents: what an uncleared reader may know exists."""
    c = open_corpus(tmp_path_factory.mktemp("rag-reference"), build_docs(), only_unrestricted=True)
    yield c
    c.store.close()
