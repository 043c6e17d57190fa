"""Read and validate a sentence-transformers BERT folder without executing anything from it.

The folder is untrusted input: ``config.json`` and ``1_Pooling/config.json`` are parsed as plain
JSON, ``tokenizer.json`` by the Rust ``tokenizers`` parser, and ``model.safetensors`` by
``safetensors`` (a length-prefixed JSON header plus raw little-endian arrays: no pickle, no code).
Every tensor name, dtype and shape is checked against what the config promises *before* any
arithmetic, so a wrong file fails here with the file and the problem named, never later with a
numpy broadcasting traceback or, worse, silently wrong vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer

from bastion.embeddings._bert import BertWeights, LayerWeights
from bastion.errors import UnusableInput
from bastion.formats.safetensors import weight_file_names
from bastion.formats.strict_json import read_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
POOLING = "1_Pooling/config.json"
ST_CONFIG = "sentence_bert_config.json"

_FIX = "Point at an unmodified sentence-transformers BERT folder such as the bundled all-MiniLM-L6-v2."
# Bounds on config values, checked before they size anything: a hostile config must not be able to
# make us reserve absurd memory or loop for long. Real BERT-family sentence encoders sit well inside.
_MAX_LAYERS = 48
_MAX_HIDDEN = 4096
_MAX_POSITIONS = 8192


@dataclass(frozen=True)
class BertConfig:
    """The shape facts of config.json that the encoder depends on."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    positions: int
    type_vocab: int
    eps: float


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UnusableInput(f"{path} is missing", hint=_FIX)
    try:
        return read_json(path)  # the one strict JSON reader: bounded, duplicate keys refused
    except UnusableInput as exc:
        detail = exc.message.removeprefix(f"{path}: ")
        raise UnusableInput(f"{path} is not readable JSON: {detail}", hint=_FIX) from None


def _int_field(cfg: dict[str, Any], key: str, path: Path, upper: int) -> int:
    value = cfg.get(key)
    # bool is an int subclass in Python; `true` is never a valid layer count.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= upper:
        raise UnusableInput(f"{path}: '{key}' must be an integer in 1..{upper}, found {value!r}", hint=_FIX)
    return value


def read_config(folder: Path) -> BertConfig:
    """Parse config.json and refuse anything that is not a plain absolute-position BERT with GELU."""
    path = folder / CONFIG
    cfg = _read_json(path)
    if cfg.get("model_type") != "bert":
        raise UnusableInput(
            f"{path}: model_type is {cfg.get('model_type')!r}, this embedder runs only 'bert'", hint=_FIX
        )
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise UnusableInput(
            f"{path}: hidden_act {cfg.get('hidden_act')!r} is not supported (only 'gelu')", hint=_FIX
        )
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise UnusableInput(
            f"{path}: position_embedding_type {cfg.get('position_embedding_type')!r} is not supported"
            " (only 'absolute')",
            hint=_FIX,
        )
    hidden = _int_field(cfg, "hidden_size", path, _MAX_HIDDEN)
    heads = _int_field(cfg, "num_attention_heads", path, hidden)
    if hidden % heads:
        raise UnusableInput(
            f"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads}", hint=_FIX
        )
    eps = cfg.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, float) or not 0.0 < eps < 1.0:
        raise UnusableInput(
            f"{path}: layer_norm_eps must be a small positive number, found {eps!r}", hint=_FIX
        )
    return BertConfig(
        hidden=hidden,
        layers=_int_field(cfg, "num_hidden_layers", path, _MAX_LAYERS),
        heads=heads,
        intermediate=_int_field(cfg, "intermediate_size", path, 8 * _MAX_HIDDEN),
        vocab=_int_field(cfg, "vocab_size", path, 1_000_000),
        positions=_int_field(cfg, "max_position_embeddings", path, _MAX_POSITIONS),
        type_vocab=_int_field(cfg, "type_vocab_size", path, 16),
        eps=eps,
    )


def check_pooling(folder: Path, hidden: int) -> None:
    """Require mean pooling of width ``hidden``: the only pooling this embedder implements."""
    path = folder / POOLING
    cfg = _read_json(path)
    modes = {k: v for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True}
    if set(modes) != {"pooling_mode_mean_tokens"}:
        raise UnusableInput(
            f"{path}: pooling modes {sorted(modes) or 'none'} are not supported (only mean tokens)", hint=_FIX
        )
    if cfg.get("word_embedding_dimension") != hidden:
        raise UnusableInput(
            f"{path}: word_embedding_dimension {cfg.get('word_embedding_dimension')!r} does not match"
            f" hidden_size {hidden} in {CONFIG}",
            hint=_FIX,
        )


def max_tokens(folder: Path, config: BertConfig) -> int:
    """Token limit per text: sentence_bert_config's max_seq_length, capped by the position table."""
    path = folder / ST_CONFIG
    if not path.exists():
        return config.positions
    value = _read_json(path).get("max_seq_length", config.positions)
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise UnusableInput(f"{path}: max_seq_length must be an integer >= 2, found {value!r}", hint=_FIX)
    return min(value, config.positions)


def load_tokenizer(folder: Path, limit: int, vocab: int) -> Tokenizer:
    """Load tokenizer.json with truncation to ``limit`` tokens and padding off (we pad in numpy)."""
    path = folder / TOKENIZER
    if not path.is_file():
        raise UnusableInput(f"{path} is missing", hint=_FIX)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for any parse error
        raise UnusableInput(f"{path} is not a valid tokenizers file: {exc}", hint=_FIX) from None
    if tok.get_vocab_size(with_added_tokens=True) > vocab:
        raise UnusableInput(
            f"{path}: {tok.get_vocab_size(with_added_tokens=True)} tokens, but the model has only {vocab}"
            " word embeddings",
            hint=_FIX,
        )
    # The bundled tokenizer.json carries truncation at 128 and fixed padding to 128 tokens; neither is
    # what sentence-transformers applies (it truncates at max_seq_length and pads to the longest), so
    # both are replaced here, once, before any thread can use the tokenizer.
    tok.no_padding()
    tok.enable_truncation(max_length=limit)
    return tok


def _expected(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    h, i = cfg.hidden, cfg.intermediate
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (cfg.vocab, h),
        "embeddings.position_embeddings.weight": (cfg.positions, h),
        "embeddings.token_type_embeddings.weight": (cfg.type_vocab, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(cfg.layers):
        p = f"encoder.layer.{n}."
        for part in ("self.query", "self.key", "self.value", "output.dense"):
            part = f"attention.{part}"
            shapes[f"{p}{part}.weight"] = (h, h)
            shapes[f"{p}{part}.bias"] = (h,)
        shapes[f"{p}intermediate.dense.weight"] = (i, h)
        shapes[f"{p}intermediate.dense.bias"] = (i,)
        shapes[f"{p}output.dense.weight"] = (h, i)
        shapes[f"{p}output.dense.bias"] = (h,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}{ln}.weight"] = (h,)
            shapes[f"{p}{ln}.bias"] = (h,)
    return shapes


def weight_files(folder: Path) -> list[Path]:
    """``model.safetensors``, or every shard a ``model.safetensors.index.json`` names."""
    files = [folder / n for n in weight_file_names(folder)]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise UnusableInput(f"{(missing or [folder / WEIGHTS])[0]} is missing", hint=_FIX)
    return files


def load_weights(folder: Path, cfg: BertConfig) -> BertWeights:
    """Read the weights (one file or shards), check every tensor the encoder needs, lay them out."""
    expected = _expected(cfg)
    tensors: dict[str, np.ndarray[Any, np.dtype[np.float32]]] = {}
    where: dict[str, Path] = {}
    for path in weight_files(folder):
        try:
            with safe_open(str(path), framework="numpy") as f:
                for name in f.keys():
                    where.setdefault(name, path)
        except SafetensorError as exc:
            raise UnusableInput(f"{path} is not a readable safetensors file: {exc}", hint=_FIX) from None
        except OSError as exc:
            raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint=_FIX) from None
    missing = sorted(set(expected) - set(where))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UnusableInput(
            f"{folder / WEIGHTS}: missing tensors {', '.join(missing[:3])}{more} "
            f"for a {cfg.layers}-layer BERT",
            hint=_FIX,
        )
    for path in sorted(set(where[n] for n in expected)):
        try:
            with safe_open(str(path), framework="numpy") as f:
                for name, shape in expected.items():
                    if where[name] != path:
                        continue
                    sl = f.get_slice(name)
                    if sl.get_dtype() != "F32" or tuple(sl.get_shape()) != shape:
                        raise UnusableInput(
                            f"{path}: tensor {name} is {sl.get_dtype()} {list(sl.get_shape())},"
                            f" expected F32 {list(shape)} (from {CONFIG})",
                            hint=_FIX,
                        )
                    tensors[name] = f.get_tensor(name)
        except SafetensorError as exc:
            raise UnusableInput(f"{path} is not a readable safetensors file: {exc}", hint=_FIX) from None
        except OSError as exc:
            raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint=_FIX) from None
    return _arrange(tensors, cfg)


def _arrange(t: dict[str, np.ndarray[Any, np.dtype[np.float32]]], cfg: BertConfig) -> BertWeights:
    def c(a: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        out = np.ascontiguousarray(a, dtype=np.float32)
        out.flags.writeable = False  # shared by every thread: make accidental mutation an error
        return out

    layers = []
    for n in range(cfg.layers):
        p = f"encoder.layer.{n}."
        qkv = [t[f"{p}attention.self.{x}.weight"] for x in ("query", "key", "value")]
        qkv_b = [t[f"{p}attention.self.{x}.bias"] for x in ("query", "key", "value")]
        layers.append(
            LayerWeights(
                qkv_w=c(np.concatenate(qkv, axis=0).T),
                qkv_b=c(np.concatenate(qkv_b)),
                attn_out_w=c(t[f"{p}attention.output.dense.weight"].T),
                attn_out_b=c(t[f"{p}attention.output.dense.bias"]),
                attn_ln_w=c(t[f"{p}attention.output.LayerNorm.weight"]),
                attn_ln_b=c(t[f"{p}attention.output.LayerNorm.bias"]),
                inter_w=c(t[f"{p}intermediate.dense.weight"].T),
                inter_b=c(t[f"{p}intermediate.dense.bias"]),
                out_w=c(t[f"{p}output.dense.weight"].T),
                out_b=c(t[f"{p}output.dense.bias"]),
                out_ln_w=c(t[f"{p}output.LayerNorm.weight"]),
                out_ln_b=c(t[f"{p}output.LayerNorm.bias"]),
            )
        )
    return BertWeights(
        word=c(t["embeddings.word_embeddings.weight"]),
        position=c(t["embeddings.position_embeddings.weight"]),
        token_type0=c(t["embeddings.token_type_embeddings.weight"][0]),
        emb_ln_w=c(t["embeddings.LayerNorm.weight"]),
        emb_ln_b=c(t["embeddings.LayerNorm.bias"]),
        layers=tuple(layers),
        num_heads=cfg.heads,
        eps=cfg.eps,
    )
