"""Uniform access to the weights lineage needs, from a GGUF file or a safetensors model.

Lineage reads, per transformer block, only the MLP's input norm, up projection (rows = hidden units)
and down projection (columns = hidden units), plus a few rows of the token embedding and the
vocabulary. Tensors are streamed in row blocks so memory stays bounded whatever the model size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bastion.errors import UnusableInput
from bastion.formats import Artifact, read_json
from bastion.formats.gguf_tensors import GGUFTensors
from bastion.formats.safetensors import weight_file_names


@dataclass(frozen=True)
class Architecture:
    """The shape facts a comparison needs; ``mlp`` is "gated" (SwiGLU/GeGLU) or "plain" (GELU)."""

    family: str
    n_layers: int
    d_model: int
    d_ffn: int
    mlp: str
    vocab_size: int

    def to_json(self) -> dict[str, Any]:
        """Plain mapping for the fingerprint file."""
        return dict(self.__dict__)


class WeightSource(Protocol):
    """What the fingerprint reads; implemented for GGUF and safetensors."""

    arch: Architecture
    tokenizer_kind: str
    vocab: list[str]
    merges: list[str]

    def embed_rows(self, ids: list[int]) -> np.ndarray: ...
    def ffn_norm(self, layer: int) -> np.ndarray | None: ...
    def up_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]: ...
    def down_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]: ...
    def close(self) -> None: ...


class GGUFSource:
    """A GGUF model in llama.cpp's tensor naming (``blk.N.ffn_up.weight`` ...)."""

    def __init__(self, path: Path, expect: os.stat_result | None = None) -> None:
        self.g = GGUFTensors(path, expect)
        meta, t = self.g.metadata, self.g.tensors
        family = str(meta.get("general.architecture", "?"))
        n_layers = int(meta.get(f"{family}.block_count", 0))
        if "token_embd.weight" not in t or n_layers == 0 or "blk.0.ffn_up.weight" not in t:
            self.g.close()
            raise UnusableInput(
                f"{path}: architecture {family!r} has no token embedding / MLP blocks lineage can read",
                hint="Lineage fingerprints transformer decoders and encoders with an MLP per block.",
            )
        up = t["blk.0.ffn_up.weight"].shape
        self.arch = Architecture(
            family=family,
            n_layers=n_layers,
            d_model=up[1],
            d_ffn=up[0],
            mlp="gated" if "blk.0.ffn_gate.weight" in t else "plain",
            vocab_size=t["token_embd.weight"].shape[0],
        )
        self.tokenizer_kind = str(meta.get("tokenizer.ggml.model", "unknown"))
        tokens = meta.get("tokenizer.ggml.tokens", [])
        merges = meta.get("tokenizer.ggml.merges", [])
        self.vocab = [str(x) for x in tokens] if isinstance(tokens, list) else []
        self.merges = [str(x) for x in merges] if isinstance(merges, list) else []

    def embed_rows(self, ids: list[int]) -> np.ndarray:
        """Token embedding rows for ``ids``."""
        return self.g.take_rows("token_embd.weight", ids)

    def ffn_norm(self, layer: int) -> np.ndarray | None:
        """The RMSNorm weight in front of the MLP (llama.cpp stores Gemma's already shifted by +1)."""
        name = f"blk.{layer}.ffn_norm.weight"
        return self.g.rows(name) if name in self.g.tensors else None

    def up_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        """Row blocks of the up projection (rows are hidden units)."""
        return self.g.row_chunks(f"blk.{layer}.ffn_up.weight")

    def down_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        """Row blocks of the down projection (rows are model dimensions, columns hidden units)."""
        return self.g.row_chunks(f"blk.{layer}.ffn_down.weight")

    def close(self) -> None:
        """Release the file."""
        self.g.close()


# Hugging Face tensor names: (embedding, up, down, norm candidates in order of preference).
_HF_LAYOUTS = (
    (
        "model.embed_tokens.weight",
        "model.layers.{i}.mlp.up_proj.weight",
        "model.layers.{i}.mlp.down_proj.weight",
        (
            "model.layers.{i}.pre_feedforward_layernorm.weight",
            "model.layers.{i}.post_attention_layernorm.weight",
        ),
    ),
    (
        "embeddings.word_embeddings.weight",
        "encoder.layer.{i}.intermediate.dense.weight",
        "encoder.layer.{i}.output.dense.weight",
        ("encoder.layer.{i}.attention.output.LayerNorm.weight",),
    ),
)


class SafetensorsSource:
    """A Hugging Face model folder (or single ``.safetensors`` file) with ``config.json`` beside it."""

    def __init__(self, path: Path, jsons: dict[str, dict[str, Any] | None] | None = None) -> None:
        """``jsons``: config.json and tokenizer.json as an Artifact parsed them (else read here)."""
        from safetensors import safe_open

        folder = path if path.is_dir() else path.parent
        files = [folder / n for n in weight_file_names(folder)] if path.is_dir() else [path]
        if not files:
            raise UnusableInput(f"{path}: no .safetensors file found", hint="Give a model folder or file.")
        self._handles: dict[str, Any] = {}
        try:
            for f in files:
                h = safe_open(str(f), framework="numpy")
                for k in h.keys():  # type: ignore[no-untyped-call]
                    # Some exports prefix every name (``bert.``); strip it so one layout table fits.
                    self._handles[k.removeprefix("bert.")] = (h, k)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for bad headers
            raise UnusableInput(f"{path}: not a readable safetensors file: {exc}") from exc
        if jsons is None:
            jsons = {n: read_json(folder / n) if (folder / n).is_file() else None for n in _JSONS}
        config = jsons.get("config.json") or {}
        family = str(config.get("model_type", "unknown"))
        # HF Gemma norms compute x * (1 + w); fold the +1 so the weight means the same as in GGUF.
        self._norm_shift = 1.0 if family.startswith("gemma") else 0.0
        for emb, up, down, norms in _HF_LAYOUTS:
            if emb in self._handles and up.format(i=0) in self._handles:
                self._emb, self._up, self._down, self._norms = emb, up, down, norms
                break
        else:
            raise UnusableInput(
                f"{path}: no token embedding / MLP tensors under a known naming (model_type {family!r})",
                hint="Lineage reads Llama-, Mistral-, Qwen-, Gemma- and BERT-style checkpoints.",
            )
        n_layers = 0
        while self._up.format(i=n_layers) in self._handles:
            n_layers += 1
        up_shape = self._tensor(self._up.format(i=0)).shape
        gated = (
            "up_proj" in self._up and self._up.replace("up_proj", "gate_proj").format(i=0) in self._handles
        )
        self.arch = Architecture(
            family,
            n_layers,
            up_shape[1],
            up_shape[0],
            "gated" if gated else "plain",
            self._tensor(self._emb).shape[0],
        )
        self.tokenizer_kind, self.vocab, self.merges = _hf_tokenizer(jsons.get("tokenizer.json"))

    def _tensor(self, name: str) -> np.ndarray:
        h, k = self._handles[name]
        return np.asarray(h.get_tensor(k), dtype=np.float32)

    def embed_rows(self, ids: list[int]) -> np.ndarray:
        """Token embedding rows for ``ids``."""
        h, k = self._handles[self._emb]
        sl = h.get_slice(k)
        return np.stack([np.asarray(sl[i : i + 1], dtype=np.float32)[0] for i in ids])

    def ffn_norm(self, layer: int) -> np.ndarray | None:
        """The norm weight in front of the MLP, shifted for Gemma's ``1 + w`` convention."""
        for n in self._norms:
            if n.format(i=layer) in self._handles:
                return self._tensor(n.format(i=layer)) + self._norm_shift
        return None

    def _chunks(self, name: str) -> Iterator[tuple[int, np.ndarray]]:
        h, k = self._handles[name]
        sl = h.get_slice(k)
        rows, cols = sl.get_shape()
        step = max(1, (64 << 20) // (cols * 4))
        for start in range(0, rows, step):
            yield start, np.asarray(sl[start : min(rows, start + step)], dtype=np.float32)

    def up_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        """Row blocks of the up projection."""
        return self._chunks(self._up.format(i=layer))

    def down_chunks(self, layer: int) -> Iterator[tuple[int, np.ndarray]]:
        """Row blocks of the down projection."""
        return self._chunks(self._down.format(i=layer))

    def close(self) -> None:
        """Nothing to release: safetensors handles close with their last reference."""
        self._handles.clear()


_JSONS = ("config.json", "tokenizer.json")


def _hf_tokenizer(tokenizer: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
    """Vocabulary (in id order) and merges from a parsed ``tokenizer.json``, or empty when absent."""
    if tokenizer is None:
        return "none", [], []
    model = tokenizer.get("model", {})
    if not isinstance(model, dict):
        return "unknown", [], []
    kind = str(model.get("type", "unknown"))
    vocab = model.get("vocab", {})
    if isinstance(vocab, dict):
        ordered = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: int(kv[1]))]
    else:  # Unigram: a list of [piece, score]
        ordered = [str(v[0]) for v in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return kind, ordered, merges


def open_source(target: Artifact | Path) -> WeightSource:
    """Open a model as GGUF (by magic) or safetensors (file or folder), or say why not.

    Given an :class:`Artifact`, the headers and JSON files it parsed are used and a GGUF is refused
    if it changed since it was hashed; given a path, the files are read here.
    """
    if isinstance(target, Artifact):
        if target.gguf is not None:
            return GGUFSource(target.path, expect=target.files[0].stat)
        if target.is_folder:
            return SafetensorsSource(target.path, {n: target.json(n) for n in _JSONS})
        path = target.path
    else:
        path = target
    if not path.exists():
        raise UnusableInput(f"{path} does not exist", hint="Check the path.")
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic == b"GGUF":
            return GGUFSource(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return SafetensorsSource(path)
    raise UnusableInput(
        f"{path} is neither a GGUF file nor a safetensors model",
        hint="Lineage reads .gguf files and Hugging Face safetensors folders.",
    )
