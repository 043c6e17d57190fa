"""Model folders for the embeddings tests: the real bundled MiniLM, and copies of it made broken.

Copies link the real (large, read-only) files and write only the file a test changes, so each bad
folder costs milliseconds. ``tiny_bert`` writes a real, randomly initialised 2-layer BERT with
non-default settings (4 heads, LayerNorm eps 1e-5) to check that config.json is honoured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bastion.bundled import minilm
from bastion.embeddings import MiniLMEmbedder


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return minilm()


@pytest.fixture(scope="session")
def embedder(minilm_path: Path) -> MiniLMEmbedder:
    return MiniLMEmbedder.load(minilm_path)


@pytest.fixture
def clone(tmp_path: Path, minilm_path: Path) -> Callable[..., Path]:
    """``clone(skip={...}, files={name: text or bytes})``: the MiniLM folder, files left out or replaced."""

    def make(skip: Collection[str] = (), files: dict[str, str | bytes] | None = None) -> Path:
        dst = tmp_path / "model"
        files = files or {}
        for src in minilm_path.rglob("*"):
            rel = src.relative_to(minilm_path).as_posix()
            if src.is_dir() or rel in skip or rel in files:
                continue
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).symlink_to(src)
        for rel, content in files.items():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (dst / rel).write_bytes(content)
            else:
                (dst / rel).write_text(content)
        return dst

    return make


@pytest.fixture(scope="session")
def config_with(minilm_path: Path) -> Callable[..., str]:
    """``config_with(key=value, ...)``: the real config.json text with some keys changed."""

    def make(**changes: object) -> str:
        cfg = json.loads((minilm_path / "config.json").read_text())
        cfg.update(changes)
        return json.dumps(cfg)

    return make


TINY = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "vocab_size": 30522,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "pad_token_id": 0,
}


def _tiny_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights for TINY under BertModel's tensor names (LayerNorm scales around 1)."""
    rng = np.random.default_rng(seed)
    h, i = TINY["hidden_size"], TINY["intermediate_size"]
    assert isinstance(h, int) and isinstance(i, int)

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": r(30522, h),
        "embeddings.position_embeddings.weight": r(64, h),
        "embeddings.token_type_embeddings.weight": r(2, h),
        "embeddings.LayerNorm.weight": 1 + r(h, scale=0.1),
        "embeddings.LayerNorm.bias": r(h),
    }
    for n in range(2):
        p = f"encoder.layer.{n}."
        for part in ("self.query", "self.key", "self.value", "output.dense"):
            t[f"{p}attention.{part}.weight"], t[f"{p}attention.{part}.bias"] = r(h, h), r(h)
        t[f"{p}intermediate.dense.weight"], t[f"{p}intermediate.dense.bias"] = r(i, h), r(i)
        t[f"{p}output.dense.weight"], t[f"{p}output.dense.bias"] = r(h, i), r(h)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[f"{p}{ln}.weight"], t[f"{p}{ln}.bias"] = 1 + r(h, scale=0.1), r(h)
    return t


@pytest.fixture
def tiny_tensors() -> dict[str, np.ndarray]:
    """The tiny BERT's tensors (a fresh dict: tests change some and save the file again)."""
    return _tiny_tensors()


@pytest.fixture
def tiny_config() -> dict[str, object]:
    """config.json of the tiny BERT (also what transformers' BertConfig is built from)."""
    return dict(TINY)


@pytest.fixture
def tiny_bert(tmp_path: Path, minilm_path: Path) -> Path:
    """A real 2-layer BERT folder with random weights and the real MiniLM tokenizer."""
    folder = tmp_path / "tiny"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TINY))
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24}))
    (folder / "tokenizer.json").symlink_to(minilm_path / "tokenizer.json")
    save_file(_tiny_tensors(), str(folder / "model.safetensors"))
    return folder
