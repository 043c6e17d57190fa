"""Fixtures shared with tests/rag: the retrieval corpus and its clean reference store."""

from tests.rag.fixtures import corpus, reference

__all__ = ["corpus", "reference"]
