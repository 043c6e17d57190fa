"""MiniLMEmbedder against the reference: sentence-transformers (torch) on the same bundled folder."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from bastion.embeddings import EmbeddingResult, MiniLMEmbedder
from bastion.embeddings.minilm import _batches
from bastion.errors import IntegrityError, UsageError

LONG = " ".join(
    f"Clause {i}: the supplier shall retain audit records of every model invocation for seven years."
    for i in range(40)
)  # far beyond 256 tokens: exercises truncation
SENTENCES = [
    "A cat sits on the mat.",
    "",
    "Ünïcödé: naïve café, Straße, 東京タワー, Привет мир, 🙂🚀",
    LONG,
    "short",
    "The gateway must never send a prompt outside the network, whatever the upstream configuration says.",
    "   leading and trailing whitespace   ",
    "Numbers 3.14159 and e-mail alice@example.org and code `x = f(y)[0]`",
]


@pytest.fixture(scope="module")
def reference(minilm_path: Path) -> Any:
    # Imported here, not at module level: torch is a dev-only dependency and takes seconds to import.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_vectors_match_sentence_transformers_per_sentence(embedder: MiniLMEmbedder, reference: Any) -> None:
    ours = embedder.embed(SENTENCES).vectors
    ref = reference.encode(SENTENCES, convert_to_numpy=True, batch_size=32)
    cos = _cosines(ours, ref)
    assert cos.min() >= 0.9999, dict(zip(SENTENCES, cos.tolist(), strict=True))
    assert np.abs(ours - ref).max() < 1e-4


def test_truncation_matches_reference_limit(
    embedder: MiniLMEmbedder, reference: Any, minilm_path: Path
) -> None:
    assert embedder.max_tokens == reference.max_seq_length == 256
    result = embedder.embed([LONG, LONG[:200]])
    assert result.token_counts[0] == 256 and result.truncated == [True, False]
    # The text cut by hand after its 254th word piece (256 with [CLS] and [SEP]) is not truncated and
    # gives the same vector as the whole long text: the encoder saw exactly the same tokens.
    tokenizer = Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    tokenizer.no_truncation()  # the file itself says 128
    offsets = tokenizer.encode(LONG, add_special_tokens=False).offsets
    cut = embedder.embed([LONG[: offsets[253][1]]])
    assert cut.token_counts == [256] and cut.truncated == [False]
    assert _cosines(cut.vectors, result.vectors[:1])[0] > 0.99999


def test_mixed_length_batch_equals_one_text_at_a_time(embedder: MiniLMEmbedder) -> None:
    batch = embedder.embed(SENTENCES, batch_size=3)
    single = np.stack([embedder.embed([s]).vectors[0] for s in SENTENCES])
    np.testing.assert_allclose(batch.vectors, single, atol=2e-6)
    assert batch.token_counts == [embedder.embed([s]).token_counts[0] for s in SENTENCES]


def test_kitten_is_closer_to_cat_than_revenue(embedder: MiniLMEmbedder) -> None:
    cat, kitten, revenue = embedder.embed(
        ["A cat sits on the mat.", "A kitten is lying on a rug.", "Quarterly revenue rose by four percent."]
    ).vectors
    assert float(cat @ kitten) > 0.5
    assert float(cat @ revenue) < 0.1


def test_vectors_are_unit_length_float32_in_input_order(embedder: MiniLMEmbedder) -> None:
    result = embedder.embed(["b b b b b b b b", "a"])
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (2, embedder.dimensions) == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.token_counts == [10, 3]  # [CLS] + tokens + [SEP]
    np.testing.assert_allclose(result.vectors[1], embedder.embed(["a"]).vectors[0], atol=2e-6)


def test_empty_string_is_embedded_as_cls_sep(embedder: MiniLMEmbedder) -> None:
    result = embedder.embed([""])
    assert result.token_counts == [2] and np.isfinite(result.vectors).all()


def test_empty_list_gives_empty_matrix(embedder: MiniLMEmbedder) -> None:
    result = embedder.embed([])
    assert result.vectors.shape == (0, 384) and result.token_counts == []


@pytest.mark.parametrize("bad", ["a single string", ["ok", 3], [None]])
def test_non_string_input_is_usage_error(embedder: MiniLMEmbedder, bad: Any) -> None:
    with pytest.raises(UsageError) as exc:
        embedder.embed(bad)
    assert exc.value.param == "input"


def test_concurrent_calls_from_threads_give_the_same_vectors(embedder: MiniLMEmbedder) -> None:
    expected = embedder.embed(SENTENCES).vectors
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: embedder.embed(SENTENCES).vectors, range(3)))
    for got in results:
        np.testing.assert_allclose(got, expected, atol=2e-6)


def test_digest_is_sha256_of_model_safetensors(embedder: MiniLMEmbedder, minilm_path: Path) -> None:
    h = hashlib.sha256((minilm_path / "model.safetensors").read_bytes()).hexdigest()
    assert embedder.digest == f"sha256:{h}"


def test_expected_digest_is_enforced(minilm_path: Path, embedder: MiniLMEmbedder) -> None:
    assert MiniLMEmbedder.load(minilm_path, expected_digest=embedder.digest).digest == embedder.digest
    with pytest.raises(IntegrityError, match="model.safetensors hashes to sha256:"):
        MiniLMEmbedder.load(minilm_path, expected_digest="sha256:" + "0" * 64)


def test_result_to_json_is_plain_data(embedder: MiniLMEmbedder) -> None:
    result = embedder.embed(["hello world"])
    data = json.loads(json.dumps(result.to_json()))
    assert data["token_counts"] == [4] and data["truncated"] == [False]
    np.testing.assert_allclose(np.array(data["vectors"], dtype=np.float32), result.vectors)
    assert isinstance(result, EmbeddingResult)


def test_batches_keep_short_texts_out_of_a_long_texts_padding() -> None:
    lengths = [5, 256, 7, 120, 6, 130, 3]
    batches = _batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 2 for b in batches)
    for b in batches:  # longest first, and nothing under half the batch's width
        assert all(lengths[i] <= lengths[b[0]] < 2 * lengths[i] + 1 for i in b)
    assert batches[0] == [1, 5] and [3] in batches
