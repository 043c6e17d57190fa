"""Fingerprints: compact, fast, round-trip, and refuse what they cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion import bundled
from bastion.errors import UnusableInput, UsageError
from bastion.lineage import Fingerprint, fingerprint, load, save
from bastion.lineage.fingerprint import stored_layers


def test_fingerprint_of_bundled_smollm2_is_compact_and_describes_the_model(
    base_fp: Fingerprint, tmp_path: Path
) -> None:
    a = base_fp.arch
    assert (a.family, a.n_layers, a.d_model, a.d_ffn, a.mlp) == ("llama", 30, 576, 1536, "gated")
    assert len(base_fp.anchors) >= 48
    assert [s.layer for s in base_fp.layers][0] == 0 and base_fp.layers[-1].layer == 29
    out = tmp_path / "fp.json"
    save(fp=base_fp, out=out)
    assert out.stat().st_size < 5_000_000
    assert base_fp.sha256.startswith("sha256:")


def test_save_and_load_round_trip_exactly(base_fp: Fingerprint, tmp_path: Path) -> None:
    out = tmp_path / "fp.json"
    save(base_fp, out)
    back = load(out)
    assert back.arch == base_fp.arch and back.anchors == base_fp.anchors
    for x, y in zip(back.layers, base_fp.layers, strict=True):
        np.testing.assert_array_equal(x.up, y.up)
        np.testing.assert_array_equal(x.down, y.down)
    assert not list(tmp_path.glob(".*tmp*")), "no temp file left behind"


def test_tampered_fingerprint_is_refused_with_a_hint(base_fp: Fingerprint, tmp_path: Path) -> None:
    data = base_fp.to_json()
    data["layers"][0]["units"] = 7  # shapes no longer agree with the bytes
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(UnusableInput, match="not a valid lineage fingerprint") as err:
        load(p)
    assert "bastion lineage fingerprint" in err.value.hint


def test_safetensors_bert_model_is_read_with_a_plain_mlp() -> None:
    fp = fingerprint(bundled.minilm())
    assert fp.arch.family == "bert" and fp.arch.mlp == "plain" and fp.arch.n_layers == 6
    assert fp.tokenizer["kind"] == "WordPiece" and fp.tokenizer["vocab_size"] == 30522
    assert len(fp.anchors) >= 48  # WordPiece word-initial tokens map onto the anchor words


def test_gemma_gguf_fingerprint_finds_sentencepiece_anchors() -> None:
    fp = fingerprint(bundled.gemma3())
    assert fp.arch.family == "gemma3" and fp.arch.d_ffn == 2048
    assert len(fp.anchors) >= 48


def test_a_file_that_is_not_a_model_is_unusable_input(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(UnusableInput, match="neither a GGUF file nor a safetensors model"):
        fingerprint(p)
    with pytest.raises(UnusableInput, match="does not exist"):
        fingerprint(tmp_path / "missing.gguf")


def test_stored_blocks_are_bounded_for_large_models() -> None:
    assert stored_layers(30, 1536) == sorted(set(stored_layers(30, 1536)))
    assert len(stored_layers(30, 1536)) == 12
    assert len(stored_layers(32, 14336)) == 4  # 7B-class: the unit budget keeps the file a few MB
    assert stored_layers(6, 1536) == list(range(6))


def test_unwritable_output_is_a_usage_error_and_leaves_nothing(base_fp: Fingerprint, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write the fingerprint"):
        save(base_fp, tmp_path / "no-such-dir" / "fp.json")
    assert list(tmp_path.iterdir()) == []
