"""Chunks: exact slices of the text, stable, covering it, preferring sentence and paragraph ends."""

from __future__ import annotations

import random

import pytest

from bastion.rag import chunk_text


def _text(seed: int) -> str:
    rng = random.Random(seed)
    words = ["radar", "cable", "station", "the", "of", "convoy", "ünïcode", "naïve", "x" * 30]
    paras = []
    for _ in range(rng.randint(1, 12)):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))) + "." for _ in range(5)]
        paras.append(" ".join(sentences))
    return "\n\n".join(paras)


@pytest.mark.parametrize("seed", range(20))
def test_every_chunk_is_the_exact_slice_of_its_offsets_and_chunks_cover_the_text(seed: int) -> None:
    text = _text(seed)
    chunks = chunk_text(text, 300, 60)
    assert chunks == chunk_text(text, 300, 60)  # stable
    covered = [False] * len(text)
    for c in chunks:
        assert text[c.start : c.end] == c.text and c.text.strip() == c.text and c.text
        assert len(c.text) <= 300
        for i in range(c.start, c.end):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_chunks_end_at_sentence_ends_when_they_can() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    chunks = chunk_text(text, 200, 40)
    assert all(c.text.endswith(".") for c in chunks)


def test_text_without_spaces_is_still_chunked() -> None:
    chunks = chunk_text("a" * 1000, 300, 50)
    assert "".join(c.text for c in chunks).count("a") >= 1000 and all(len(c.text) <= 300 for c in chunks)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk_text("x", 100, 100)
