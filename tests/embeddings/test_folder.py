"""Bad model folders are refused with UnusableInput naming the file and the problem, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bastion.embeddings import MiniLMEmbedder
from bastion.errors import UnusableInput

CloneFn = Callable[..., Path]
ConfigFn = Callable[..., str]
Tensors = dict[str, np.ndarray]


def _refused(folder: Path, *fragments: str) -> UnusableInput:
    with pytest.raises(UnusableInput) as exc:
        MiniLMEmbedder.load(folder)
    for fragment in fragments:
        assert fragment in exc.value.message, exc.value.message
    assert exc.value.hint and exc.value.exit_code == 3
    return exc.value


@pytest.mark.parametrize(
    "name", ["model.safetensors", "config.json", "tokenizer.json", "1_Pooling/config.json"]
)
def test_missing_file_is_named(clone: CloneFn, name: str) -> None:
    _refused(clone(skip={name}), name, "missing")


def test_path_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", "is not a folder")


def test_non_bert_model_type_is_refused(clone: CloneFn, config_with: ConfigFn) -> None:
    _refused(clone(files={"config.json": config_with(model_type="roberta")}), "'roberta'")


def test_config_that_does_not_match_tensor_shapes_is_refused(clone: CloneFn, config_with: ConfigFn) -> None:
    pooling = json.dumps({"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True})
    config = config_with(hidden_size=768, num_attention_heads=12)
    folder = clone(files={"config.json": config, "1_Pooling/config.json": pooling})
    err = _refused(folder, "model.safetensors", "expected F32 [30522, 768]")
    assert "[30522, 384]" in err.message


def test_config_with_more_layers_than_the_file_is_refused(clone: CloneFn, config_with: ConfigFn) -> None:
    _refused(clone(files={"config.json": config_with(num_hidden_layers=7)}), "encoder.layer.6.")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_hidden_layers", 10_000),
        ("hidden_size", "384"),
        ("num_attention_heads", 5),
        ("layer_norm_eps", 0),
        ("vocab_size", True),
    ],
)
def test_out_of_range_config_values_are_refused(
    clone: CloneFn, config_with: ConfigFn, key: str, value: object
) -> None:
    _refused(clone(files={"config.json": config_with(**{key: value})}), "config.json")


def test_config_that_is_not_json_is_refused(clone: CloneFn) -> None:
    _refused(clone(files={"config.json": "{not json"}), "config.json", "not readable JSON")


def test_truncated_safetensors_is_refused(clone: CloneFn, minilm_path: Path) -> None:
    whole = (minilm_path / "model.safetensors").read_bytes()
    _refused(clone(files={"model.safetensors": whole[: len(whole) // 2]}), "model.safetensors", "safetensors")


def test_garbage_safetensors_is_refused(clone: CloneFn) -> None:
    _refused(clone(files={"model.safetensors": b"\x00" * 64}), "model.safetensors")


def test_wrong_shape_tensor_in_a_real_file_is_refused(tiny_bert: Path, tiny_tensors: Tensors) -> None:
    tensors = tiny_tensors
    tensors["encoder.layer.1.intermediate.dense.weight"] = np.zeros((64, 31), np.float32)
    save_file(tensors, str(tiny_bert / "model.safetensors"))
    _refused(tiny_bert, "encoder.layer.1.intermediate.dense.weight", "[64, 31]", "expected F32 [64, 32]")


def test_half_precision_tensor_is_refused(tiny_bert: Path, tiny_tensors: Tensors) -> None:
    tensors = tiny_tensors
    tensors["embeddings.LayerNorm.bias"] = tensors["embeddings.LayerNorm.bias"].astype(np.float16)
    save_file(tensors, str(tiny_bert / "model.safetensors"))
    _refused(tiny_bert, "embeddings.LayerNorm.bias is F16")


def test_broken_tokenizer_is_refused(clone: CloneFn) -> None:
    _refused(clone(files={"tokenizer.json": '{"model": {"type": "Nope"}}'}), "tokenizer.json")


def test_tokenizer_larger_than_embedding_table_is_refused(
    tiny_bert: Path, tiny_config: dict[str, object], tiny_tensors: Tensors
) -> None:
    # Token ids past the table would index out of range; refuse at load instead.
    (tiny_bert / "config.json").write_text(json.dumps({**tiny_config, "vocab_size": 1000}))
    tensors = tiny_tensors
    tensors["embeddings.word_embeddings.weight"] = tensors["embeddings.word_embeddings.weight"][:1000]
    save_file(tensors, str(tiny_bert / "model.safetensors"))
    _refused(tiny_bert, "tokenizer.json", "30522 tokens", "only 1000")


@pytest.mark.parametrize(
    "pooling",
    [
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": True},
        {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True},
    ],
)
def test_unsupported_pooling_is_refused(clone: CloneFn, pooling: dict[str, object]) -> None:
    _refused(clone(files={"1_Pooling/config.json": json.dumps(pooling)}), "1_Pooling/config.json")


def test_sentence_bert_config_limit_is_honoured(clone: CloneFn) -> None:
    folder = clone(files={"sentence_bert_config.json": '{"max_seq_length": 64}'})
    assert MiniLMEmbedder.load(folder).max_tokens == 64


def test_limit_is_capped_by_the_position_table(clone: CloneFn) -> None:
    folder = clone(files={"sentence_bert_config.json": '{"max_seq_length": 4096}'})
    assert MiniLMEmbedder.load(folder).max_tokens == 512
