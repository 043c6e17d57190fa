"""GGUF tensor access over the one GGUF header reader: rows agree, corrupt files are clear errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.formats.gguf_tensors import GGUFTensors


def test_reads_bundled_header_vocabulary_and_tensor_table() -> None:
    with GGUFTensors(bundled.smollm2()) as g:
        assert g.metadata["general.architecture"] == "llama"
        assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152
        info = g.tensors["blk.0.ffn_up.weight"]
        assert info.shape == (1536, 576) and info.qtype.name == "Q4_1"


def test_row_ranges_agree_with_the_whole_tensor() -> None:
    with GGUFTensors(bundled.smollm2()) as g:
        whole = g.rows("blk.3.ffn_down.weight")
        assert whole.shape == (576, 1536) and whole.dtype == np.float32
        np.testing.assert_array_equal(g.rows("blk.3.ffn_down.weight", 100, 140), whole[100:140])
        np.testing.assert_array_equal(g.take_rows("blk.3.ffn_down.weight", [5, 7]), whole[[5, 7]])
        chunks = np.concatenate([c for _, c in g.row_chunks("blk.3.ffn_down.weight", chunk_bytes=1 << 16)])
        np.testing.assert_array_equal(chunks, whole)


def test_not_a_gguf_file_is_unusable_input(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(UnusableInput, match="not a GGUF file"):
        GGUFTensors(p)


def test_truncated_gguf_names_the_file_and_the_problem(tmp_path: Path) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(bundled.smollm2().read_bytes()[: 40 << 20])  # header intact, tensor data cut short
    with pytest.raises(UnusableInput, match="past the end of the file") as err:
        GGUFTensors(p)
    assert str(p) in err.value.message and err.value.hint


def test_absurd_key_count_is_refused_before_allocating(tmp_path: Path) -> None:
    p = tmp_path / "huge.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 1 << 32))
    with pytest.raises(UnusableInput, match="cannot fit"):
        GGUFTensors(p)


def test_header_cut_mid_string_is_unusable_input(tmp_path: Path) -> None:
    p = tmp_path / "short.gguf"
    p.write_bytes(bundled.smollm2().read_bytes()[:5000])
    with pytest.raises(UnusableInput, match="malformed GGUF"):
        GGUFTensors(p)


def test_a_file_changed_since_it_was_read_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(bundled.smollm2().read_bytes())
    before = p.stat()
    with p.open("r+b") as fh:  # same size, same name: only the identity (mtime/ctime) tells
        fh.seek(-1, 2)
        fh.write(b"\x01")
    with pytest.raises(UnusableInput, match="changed after it was read"):
        GGUFTensors(p, expect=before)
