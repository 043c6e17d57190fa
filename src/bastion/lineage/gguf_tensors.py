"""Read a GGUF file's metadata and individual tensors, memory-mapped, without loading the model.

``gguf.GGUFReader`` builds a numpy view for every element of every metadata array, which takes 10 s
for SmolLM2's tokenizer and 36 s for Gemma's; lineage needs the header, the vocabulary and a handful
of tensors, so we parse the header ourselves (plain ``struct``, every length bounded by the file size)
and hand only the tensor rows we need to ``gguf.quants.dequantize``. Nothing in the file is executed:
metadata is data, and the chat template is never rendered.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from bastion.errors import UnusableInput

# Bounds that stop a hostile header from making us allocate without limit (cf. the n_kv = 2^32 calloc
# bug in other GGUF readers): every count must also fit in the bytes actually present in the file.
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_DIMS = 4

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in the file: numpy-order shape (rows first), quant type, byte range."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    offset: int
    nbytes: int

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (the innermost dimension), which quantized blocks never cross."""
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.shape[-1] // block * size


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise UnusableInput(
                f"{self.path}: GGUF header runs past the end of the file (truncated or corrupt)",
                hint="Copy the file again and compare its sha256 with the publisher's.",
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            sub, n = self.unpack("<I"), self.unpack("<Q")
            if n > len(self.buf) - self.pos:  # every element takes at least one byte
                raise UnusableInput(
                    f"{self.path}: a metadata array claims {n} elements, more than the file holds "
                    "(truncated or corrupt)",
                    hint="Copy the file again and compare its sha256 with the publisher's.",
                )
            if sub in _SCALARS and sub != 7:
                fmt = _SCALARS[sub]
                raw = self.take(n * struct.calcsize(fmt))
                return np.frombuffer(raw, dtype=np.dtype(fmt)).copy()
            return [self.value(sub) for _ in range(n)]
        raise UnusableInput(f"{self.path}: unknown GGUF metadata type {vtype}", hint="Is this a GGUF file?")


class GGUFTensors:
    """An open GGUF file: ``metadata``, ``tensors`` and on-demand dequantized rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh: BinaryIO = path.open("rb")
            self._buf = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise UnusableInput(f"cannot read {path}: {exc}", hint="Check the path and permissions.") from exc
        try:
            self.metadata, self.tensors = self._parse()
        except BaseException:
            self.close()
            raise

    def _parse(self) -> tuple[dict[str, Any], dict[str, TensorInfo]]:
        cur = _Cursor(self._buf, self.path)
        if cur.take(4) != b"GGUF":
            raise UnusableInput(f"{self.path} is not a GGUF file (bad magic)", hint="Give a .gguf file.")
        version = cur.unpack("<I")
        if version not in (2, 3):
            raise UnusableInput(f"{self.path}: GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
            raise UnusableInput(f"{self.path}: header claims {n_kv} keys / {n_tensors} tensors; refusing")
        meta: dict[str, Any] = {}
        self.value_types: dict[str, int] = {}  # GGUF value type per key, for tools that rewrite files
        for _ in range(n_kv):
            key = cur.string()
            vtype = cur.unpack("<I")
            self.value_types[key] = vtype
            meta[key] = cur.value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("<I")
            if n_dims > MAX_DIMS:
                raise UnusableInput(f"{self.path}: tensor {name!r} has {n_dims} dimensions")
            dims = [cur.unpack("<Q") for _ in range(n_dims)]
            raw_type, offset = cur.unpack("<I"), cur.unpack("<Q")
            try:
                qtype = GGMLQuantizationType(raw_type)
            except ValueError as exc:
                raise UnusableInput(f"{self.path}: tensor {name!r} has unknown type {raw_type}") from exc
            infos.append((name, tuple(reversed(dims)), qtype, offset))
        align = int(meta.get("general.alignment", 32))
        start = (cur.pos + align - 1) // align * align
        tensors: dict[str, TensorInfo] = {}
        for name, shape, qtype, offset in infos:
            block, size = GGML_QUANT_SIZES[qtype]
            count = int(np.prod(shape)) if shape else 1
            if not shape or shape[-1] % block:
                raise UnusableInput(f"{self.path}: tensor {name!r} shape {shape} does not fit {qtype.name}")
            nbytes = count // block * size
            if start + offset + nbytes > len(self._buf):
                # A tensor that claims bytes past the end is the out-of-bounds read in CVE-2026-7482.
                raise UnusableInput(
                    f"{self.path}: tensor {name!r} extends past the end of the file (truncated or corrupt)",
                    hint="Copy the file again and compare its sha256 with the publisher's.",
                )
            tensors[name] = TensorInfo(name, shape, qtype, start + offset, nbytes)
        return meta, tensors

    def rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of a 2-D tensor (or the whole 1-D tensor), dequantized to float32."""
        info = self.tensors[name]
        if len(info.shape) == 1:
            raw = np.frombuffer(self._buf, np.uint8, info.nbytes, info.offset)
            return np.array(dequantize(raw, info.qtype), dtype=np.float32).reshape(info.shape)
        n_rows = int(np.prod(info.shape[:-1]))
        stop = n_rows if stop is None else min(stop, n_rows)
        rb = info.row_bytes
        raw = np.frombuffer(self._buf, np.uint8, (stop - start) * rb, info.offset + start * rb)
        return np.array(dequantize(raw.reshape(stop - start, rb), info.qtype), dtype=np.float32)

    def take_rows(self, name: str, ids: list[int]) -> np.ndarray:
        """Selected rows of a 2-D tensor (e.g. a few token embeddings), dequantized to float32."""
        return np.concatenate([self.rows(name, i, i + 1) for i in ids]) if ids else np.zeros((0, 0))

    def row_chunks(self, name: str, chunk_bytes: int = 64 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` blocks so a large tensor is never dequantized all at once."""
        info = self.tensors[name]
        n_rows = int(np.prod(info.shape[:-1]))
        step = max(1, chunk_bytes // (info.shape[-1] * 4))
        for start in range(0, n_rows, step):
            yield start, self.rows(name, start, start + step)

    def close(self) -> None:
        """Release the memory map and the file handle."""
        buf = getattr(self, "_buf", None)
        if buf is not None:
            buf.close()
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> GGUFTensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
