"""The bounded GGUF reader on the real bundled files and on crafted headers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.formats import read_gguf


def _s(x: str) -> bytes:
    return struct.pack("<Q", len(x.encode())) + x.encode()


def _header(n_tensors: int, kvs: list[bytes]) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kvs)) + b"".join(kvs)


def test_reads_smollm2_header_metadata_and_tensors() -> None:
    info = read_gguf(bundled.smollm2())
    assert info.version == 3
    assert info.metadata["general.architecture"] == "llama"
    assert info.metadata["llama.context_length"] == 8192
    assert len(info.tensors) == 272
    assert info.n_parameters == 134_515_008
    assert "<|im_start|>" in info.special_tokens
    assert info.to_json()["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}


def test_reads_gemma3_with_its_262k_vocabulary() -> None:
    info = read_gguf(bundled.gemma3())
    assert info.metadata["tokenizer.ggml.tokens"].length == 262_144
    assert info.metadata["general.architecture"] == "gemma3"
    assert "tokenizer.chat_template" not in info.metadata


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"GGUF"
            + struct.pack("<IQQ", 3, 0, 2)
            + _s("a")
            + struct.pack("<II", 4, 1)
            + _s("a")
            + struct.pack("<II", 4, 2),
            "duplicate metadata key",
        ),
        (_header(0, [_s("k") + struct.pack("<I", 77) + b"\x00" * 8]), "unknown value type"),
        (_header(0, [_s("k") + struct.pack("<IIQ", 9, 4, 2**40)]), "needs"),
        (
            _header(
                0,
                [
                    _s("k")
                    + struct.pack("<IIQ", 9, 9, 1)
                    + struct.pack("<IQ", 9, 1)
                    + struct.pack("<IQ", 9, 1)
                    + b"\x00" * 16
                ],
            ),
            "nests arrays",
        ),
        (_header(1, []) + _s("t" * 64) + b"\x00" * 40, "llama.cpp allows"),
        (_header(1, []) + _s("t") + struct.pack("<I", 5) + b"\x00" * 40, "dimensions"),
        (_header(1, []) + _s("t") + struct.pack("<IQIQ", 1, 0, 0, 0) + b"\x00" * 40, "dimension 0"),
        (_header(1, []) + _s("t") + struct.pack("<IQIQ", 1, 33, 2, 0) + b"\x00" * 64, "multiple of Q4_0"),
        (_header(0, [_s("general.alignment") + struct.pack("<II", 4, 3)]), "power of two"),
    ],
)
def test_crafted_header_is_refused_with_a_reason(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(UnusableInput, match=message):
        read_gguf(_write(tmp_path, data))
