"""Fixtures of the retrieval tests (defined in fixtures.py so tests/adversarial can share them)."""

from tests.rag.fixtures import corpus, reference

__all__ = ["corpus", "reference"]
