"""Weight sources: the same model read from GGUF and from a Hugging Face safetensors folder agrees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.formats import open_artifact
from bastion.formats.gguf_tensors import GGUFTensors
from bastion.hashing import file_digest
from bastion.lineage import Fingerprint, compare, fingerprint
from bastion.lineage.sources import open_source

HF = {
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_norm": "post_attention_layernorm",
    "attn_norm": "input_layernorm",
}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's MLP, norms and embedding re-exported the way transformers names them, with tokenizer.json."""
    out = tmp_path_factory.mktemp("smollm2-hf")
    tensors: dict[str, np.ndarray] = {}
    with GGUFTensors(bundled.smollm2()) as g:
        tensors["model.embed_tokens.weight"] = g.rows("token_embd.weight").astype(np.float16)
        for i in range(30):
            for src, dst in HF.items():
                w = g.rows(f"blk.{i}.{src}.weight")
                tensors[f"model.layers.{i}.{dst}.weight"] = w.astype(
                    np.float16 if w.ndim == 2 else np.float32
                )
        vocab = {str(t): i for i, t in enumerate(g.metadata["tokenizer.ggml.tokens"])}
        merges = [str(m) for m in g.metadata["tokenizer.ggml.merges"]]
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 30}))
    (out / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges}})
    )
    return out


def test_safetensors_folder_and_gguf_of_the_same_model_are_related(
    hf_folder: Path, base_fp: Fingerprint
) -> None:
    fp = fingerprint(hf_folder)
    assert fp.arch.mlp == "gated" and fp.arch.n_layers == 30
    # the folder is known by its weights digest, as admission records it (one weights file: its sha256)
    assert fp.sha256 == open_artifact(hf_folder).weights_digest() == file_digest(hf_folder / "model.safetensors")
    c = compare(base_fp, fp)
    assert c.verdict == "related" and (c.score or 0) > 0.99
    assert c.tokenizer.vocab_jaccard == 1.0  # same tokens, read from tokenizer.json instead of GGUF metadata


def test_safetensors_without_known_tensor_names_is_unusable(tmp_path: Path) -> None:
    save_file({"weird.weight": np.zeros((4, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UnusableInput, match="no token embedding / MLP tensors"):
        open_source(tmp_path)


def test_corrupt_safetensors_header_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(UnusableInput, match="not a readable safetensors file"):
        open_source(tmp_path)
