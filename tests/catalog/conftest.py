"""Fixtures for catalog tests: the real bundled models, and real GGUF files written at test time."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from bastion import bundled


@pytest.fixture(scope="session")
def gemma3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bundled Gemma 3 270M GGUF, assembled once per session."""
    return bundled.gemma3(cache_dir=tmp_path_factory.mktemp("models"))


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return _string(key) + struct.pack("<I", 8) + _string(value)
    if isinstance(value, bool):
        return _string(key) + struct.pack("<I", 7) + struct.pack("<?", value)
    if isinstance(value, int):
        return _string(key) + struct.pack("<I", 4) + struct.pack("<I", value)
    if isinstance(value, list):  # list of strings
        body = b"".join(_string(v) for v in value)
        return _string(key) + struct.pack("<I", 9) + struct.pack("<IQ", 8, len(value)) + body
    raise TypeError(value)


def write_gguf(
    path: Path, metadata: dict[str, Any], *, kv_count: int | None = None, tail: bytes = b""
) -> Path:
    """Write a GGUF v3 header with ``metadata`` (and no tensors) to ``path``."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata) if kv_count is None else kv_count)
    path.write_bytes(header + b"".join(_kv(k, v) for k, v in metadata.items()) + tail)
    return path


@pytest.fixture
def gguf_writer() -> Any:
    """The ``write_gguf`` helper, as a fixture (test folders are not packages)."""
    return write_gguf
