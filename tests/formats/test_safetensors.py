"""The safetensors header validator."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.formats import read_safetensors


def test_reads_the_bundled_minilm_weights() -> None:
    info = read_safetensors(bundled.minilm() / "model.safetensors")
    assert len(info.tensors) == 104
    assert info.n_parameters == 22_713_728
    assert info.metadata == {"format": "pt"}


def test_reads_a_file_written_by_the_safetensors_library(tmp_path: Path) -> None:
    p = tmp_path / "x.safetensors"
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.zeros(0, np.int8)}, str(p))
    info = read_safetensors(p)
    assert {t.name: t.shape for t in info.tensors} == {"a": (2, 3), "b": (0,)}


def _file(tmp_path: Path, header: object, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return p


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ([1, 2], b"", "does not start with"),
        ({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\x00" * 4, "non-negative"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8, "gap"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, b"\x00" * 4, "exactly"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ],
)
def test_inconsistent_header_is_refused(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    with pytest.raises(UnusableInput, match=message):
        read_safetensors(_file(tmp_path, header, data))
