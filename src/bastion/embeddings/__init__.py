"""Sentence embeddings without torch: a numpy BERT encoder for the bundled all-MiniLM-L6-v2.

``MiniLMEmbedder.load(path)`` validates a sentence-transformers folder and returns an embedder whose
``embed(texts)`` gives an ``EmbeddingResult`` of unit-length float32 vectors.
"""

from bastion.embeddings.minilm import EmbeddingResult, MiniLMEmbedder

__all__ = ["EmbeddingResult", "MiniLMEmbedder"]
