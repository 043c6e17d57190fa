"""Readers for the JSON files of a Hugging Face model folder: config, tokenizer config, tokenizer.

Plain data in, plain data out: sizes are bounded, duplicate keys refused (parsers disagree on which
one wins), and only the fields vet and the AI-BOM need are lifted out. Nothing here imports
``transformers`` or follows ``auto_map``: remote code is listed, never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.formats.strict_json import read_json


def _auto_map(data: dict[str, Any]) -> dict[str, str]:
    raw = data.get("auto_map")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        # values are "module.Class", "repo--module.Class" or a [slow, fast] pair for tokenizers
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str):
                out[str(k)] = item
    return out


@dataclass(frozen=True)
class HFConfig:
    """The model-card facts of ``config.json``."""

    path: Path
    model_type: str | None
    architectures: tuple[str, ...]
    context_length: int | None
    dtype: str | None
    auto_map: dict[str, str] = field(default_factory=dict)
    raw_fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The facts as a plain mapping."""
        return {
            "format": "hf-config",
            "model_type": self.model_type,
            "architectures": list(self.architectures),
            "context_length": self.context_length,
            "dtype": self.dtype,
            "auto_map": self.auto_map,
            **self.raw_fields,
        }


def read_hf_config(path: Path) -> HFConfig:
    """Read ``config.json``."""
    return hf_config_of(path, read_json(path))


def hf_config_of(path: Path, data: dict[str, Any]) -> HFConfig:
    """The facts of an already parsed ``config.json``."""
    archs = data.get("architectures") or []
    ctx = data.get("max_position_embeddings", data.get("n_positions"))
    keep = {
        k: data[k]
        for k in ("hidden_size", "num_hidden_layers", "vocab_size", "license")
        if isinstance(data.get(k), int | str)
    }
    return HFConfig(
        path,
        data.get("model_type") if isinstance(data.get("model_type"), str) else None,
        tuple(a for a in archs if isinstance(a, str)) if isinstance(archs, list) else (),
        ctx if isinstance(ctx, int) and not isinstance(ctx, bool) else None,
        next((d for d in (data.get("torch_dtype"), data.get("dtype")) if isinstance(d, str)), None),
        _auto_map(data),
        keep,
    )


@dataclass(frozen=True)
class TokenizerConfig:
    """Chat templates, special tokens and remote-code hooks of ``tokenizer_config.json``."""

    path: Path
    chat_templates: dict[str, str]
    special_tokens: tuple[str, ...]
    auto_map: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The facts as a plain mapping."""
        return {
            "format": "hf-tokenizer-config",
            "chat_templates": sorted(self.chat_templates),
            "special_tokens": len(self.special_tokens),
            "auto_map": self.auto_map,
        }


def read_tokenizer_config(path: Path) -> TokenizerConfig:
    """Read ``tokenizer_config.json`` (chat_template may be a string or a list of named templates)."""
    return tokenizer_config_of(path, read_json(path))


def tokenizer_config_of(path: Path, data: dict[str, Any]) -> TokenizerConfig:
    """The facts of an already parsed ``tokenizer_config.json``."""
    templates: dict[str, str] = {}
    ct = data.get("chat_template")
    if isinstance(ct, str):
        templates["default"] = ct
    elif isinstance(ct, list):
        for i, item in enumerate(ct):
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                templates[str(item.get("name", i))] = item["template"]
    special: list[str] = []
    for k, v in data.items():
        if k.endswith("_token"):
            tok = v.get("content") if isinstance(v, dict) else v
            if isinstance(tok, str):
                special.append(tok)
    decoder = data.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        special += [
            v["content"]
            for v in decoder.values()
            if isinstance(v, dict) and isinstance(v.get("content"), str)
        ]
    extra = data.get("additional_special_tokens")
    if isinstance(extra, list):
        special += [t for t in extra if isinstance(t, str)]
    return TokenizerConfig(path, templates, tuple(dict.fromkeys(special)), _auto_map(data))


def read_tokenizer_added_tokens(path: Path) -> tuple[str, ...]:
    """The ``added_tokens`` contents of ``tokenizer.json`` (the special tokens the model was trained with)."""
    return added_tokens_of(read_json(path))


def added_tokens_of(data: dict[str, Any]) -> tuple[str, ...]:
    """The ``added_tokens`` contents of an already parsed ``tokenizer.json``."""
    added = data.get("added_tokens")
    if not isinstance(added, list):
        return ()
    return tuple(t["content"] for t in added if isinstance(t, dict) and isinstance(t.get("content"), str))
