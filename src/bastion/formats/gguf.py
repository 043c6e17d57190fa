"""A bounded GGUF reader: header, metadata and tensor infos, never the weights.

Every count and length read from the file is checked against the bytes that remain *before* anything
is allocated or looped over, so a crafted header (``n_kv = 2**63``, a string length of a terabyte)
becomes a clear :class:`~bastion.errors.UnusableInput` instead of an allocation or a hang. The file is
memory-mapped read-only; only the header region is touched. Large numeric arrays (token scores and
types) are viewed with numpy instead of decoded one by one, which is why this reader opens the
262k-token Gemma 3 file in well under a second where ``gguf.GGUFReader`` takes tens of seconds.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import UnusableInput
from bastion.formats.gguf_types import GGML_TYPES, NUMPY_DTYPES, SCALARS, T_ARRAY, T_STRING

MAGIC = b"GGUF"
#: llama.cpp refuses tensor names of 64 bytes or more (GGML_MAX_NAME) and more than 4 dimensions.
MAX_NAME = 64
MAX_DIMS = 4
#: Bounds we impose ourselves: a real key is a short dotted name; arrays nest at most once in practice.
MAX_KEY = 65_535
MAX_ARRAY_DEPTH = 2


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array kept as its type and length (token lists are large and not report material)."""

    item_type: str
    length: int
    #: SHA-256 of the array's raw item bytes (string arrays): identifies a vocabulary without keeping it
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        """The summary as a plain mapping."""
        out: dict[str, Any] = {"array_of": self.item_type, "length": self.length}
        if self.sha256:
            out["sha256"] = self.sha256
        return out


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry: name, ggml type, shape (ggml order), offset and byte size."""

    name: str
    ggml_type: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    type_id: int = 0

    @property
    def n_elements(self) -> int:
        """Number of elements in the tensor."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says: version, metadata, tensors, and the strings vet must inspect."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    alignment: int
    #: tokens typed CONTROL (3) or USER_DEFINED (4): the special tokens a chat template refers to
    special_tokens: tuple[str, ...] = field(default=())
    #: GGUF value type of every metadata key (tools that rewrite a file need it)
    value_types: dict[str, int] = field(default_factory=dict)
    #: whole arrays (string lists, numpy arrays) when read with ``keep_arrays=True``; else empty
    arrays: dict[str, Any] = field(default_factory=dict)

    @property
    def n_parameters(self) -> int:
        """Total elements over all tensors."""
        return sum(t.n_elements for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        """Header facts as a plain mapping (arrays summarised, tensors counted by type)."""
        by_type: dict[str, int] = {}
        for t in self.tensors:
            by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + 1
        return {
            "format": "gguf",
            "version": self.version,
            "metadata": {
                k: v.to_json() if isinstance(v, ArraySummary) else v for k, v in self.metadata.items()
            },
            "tensor_count": len(self.tensors),
            "tensor_types": by_type,
            "parameters": self.n_parameters,
        }


class _Cursor:
    """Reads little-endian values from a buffer, refusing to step past its end."""

    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def fail(self, what: str) -> UnusableInput:
        return UnusableInput(
            f"{self.path}: malformed GGUF at byte {self.pos}: {what}",
            hint="The file is truncated or crafted; obtain the model again from its publisher.",
        )

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} needs {n} bytes but only {self.size - self.pos} remain")

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", 8, what))

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.u64(f"length of {what}")
        if limit is not None and n > limit:
            raise self.fail(f"{what} is {n} bytes long (limit {limit})")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8") from exc


def read_gguf(path: Path, keep_arrays: bool = False) -> GGUFInfo:
    """Parse the header of the GGUF file at ``path``; raise UnusableInput naming the first defect.

    Metadata arrays are summarised (type, length, digest); ``keep_arrays`` also keeps them whole in
    ``GGUFInfo.arrays`` (lineage needs the vocabulary and merges).
    """
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise UnusableInput(
                    f"{path}: {size} bytes is too short for a GGUF header (24 bytes minimum)",
                    hint="The file is empty or truncated.",
                )
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    return parse_gguf(view, path, keep_arrays)
                finally:
                    view.release()
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc


def parse_gguf(buf: memoryview, path: Path, keep_arrays: bool = False) -> GGUFInfo:
    """Parse a GGUF header from ``buf`` (the whole file's bytes, memory-mapped); see :func:`read_gguf`."""
    c = _Cursor(buf, path)
    magic = bytes(c.buf[0:4])
    if magic != MAGIC:
        raise UnusableInput(
            f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')",
            hint="Check that this is the model file and not an HTML error page or a pickle.",
        )
    c.pos = 4
    version = c.u32("version")
    if version not in (2, 3):
        raise c.fail(f"unsupported GGUF version {version} (2 and 3 are supported)")
    n_tensors = c.u64("tensor count")
    n_kv = c.u64("metadata count")
    # Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes and each tensor info at
    # least 8 + 4 + 8 + 4 + 8: checking the counts against the file size first bounds every loop below.
    if n_kv * 13 > c.size - c.pos:
        raise c.fail(f"metadata count {n_kv} cannot fit in a {c.size}-byte file")
    if n_tensors * 32 > c.size - c.pos:
        raise c.fail(f"tensor count {n_tensors} cannot fit in a {c.size}-byte file")
    metadata: dict[str, Any] = {}
    value_types: dict[str, int] = {}
    arrays: dict[str, Any] = {}
    tokens: list[str] | None = None
    token_types: Any = None
    for i in range(n_kv):
        key = c.string(f"key of metadata entry {i}", MAX_KEY)
        if key in metadata:
            raise c.fail(f"duplicate metadata key {key!r}")
        vtype = c.u32(f"type of {key!r}")
        value_types[key] = vtype
        if key == "tokenizer.ggml.tokens" and vtype == T_ARRAY:
            start = c.pos + 12  # after the item type (4 bytes) and the count (8 bytes)
            tokens = _string_array(c, key)
            digest = hashlib.sha256(c.buf[start : c.pos]).hexdigest()
            metadata[key] = ArraySummary("string", len(tokens), digest)
            if keep_arrays:
                arrays[key] = tokens
            continue
        value = _value(c, vtype, key, 0, arrays if keep_arrays else None)
        if keep_arrays and isinstance(value, np.ndarray):
            arrays[key] = value
        if key == "tokenizer.ggml.token_type" and isinstance(value, np.ndarray):
            token_types = value
            value = ArraySummary("int32", len(value))
        elif isinstance(value, np.ndarray):
            value = ArraySummary(str(value.dtype), len(value))
        metadata[key] = value
    alignment = metadata.get("general.alignment", 32)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise c.fail(f"general.alignment {alignment!r} is not a positive power of two")
    infos = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = c.string(f"name of tensor {i}", 1 << 16)
        if len(name.encode()) >= MAX_NAME:
            raise c.fail(
                f"tensor name {name[:80]!r} is {len(name.encode())} bytes (llama.cpp allows < {MAX_NAME})"
            )
        if name in names:
            raise c.fail(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = c.u32(f"dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(c.u64(f"dimension of {name!r}") for _ in range(n_dims))
        type_id = c.u32(f"type of {name!r}")
        offset = c.u64(f"offset of {name!r}")
        if type_id not in GGML_TYPES:
            raise c.fail(f"tensor {name!r} has unknown ggml type {type_id}")
        tname, block, bsize = GGML_TYPES[type_id]
        n = 1
        for d in shape:
            if d == 0 or d >= 1 << 62:
                raise c.fail(f"tensor {name!r} has dimension {d}")
            n *= d
            if n >= 1 << 62:  # the element count overflows int64 in llama.cpp
                raise c.fail(f"tensor {name!r} has more than 2**62 elements")
        if shape[0] % block:
            raise c.fail(
                f"tensor {name!r}: first dimension {shape[0]} is not a multiple of {tname}'s block {block}"
            )
        if offset % alignment:
            raise c.fail(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        infos.append(TensorInfo(name, tname, shape, offset, n // block * bsize, type_id))
    data_offset = -(-c.pos // alignment) * alignment
    data_size = c.size - data_offset
    end = 0
    for t in sorted(infos, key=lambda t: t.offset):
        # Tensors must lie inside the file and not overlap: a misstated size is how out-of-bounds reads
        # in loaders (Ollama CVE-2026-7482) are triggered.
        if t.offset < end:
            raise UnusableInput(
                f"{path}: malformed GGUF: tensor {t.name!r} overlaps the previous tensor",
                hint="The file is truncated or crafted; obtain the model again.",
            )
        end = t.offset + t.nbytes
        if end > data_size:
            raise UnusableInput(
                f"{path}: malformed GGUF: tensor {t.name!r} ends at data byte {end}, past the end of the "
                f"file ({data_size} data bytes)",
                hint="The file is truncated; obtain the model again from its publisher.",
            )
    special: tuple[str, ...] = ()
    if tokens is not None and token_types is not None and len(token_types) == len(tokens):
        idx = np.nonzero((token_types == 3) | (token_types == 4))[0]
        special = tuple(tokens[int(i)] for i in idx)
    return GGUFInfo(
        path, version, metadata, tuple(infos), data_offset, alignment, special, value_types, arrays
    )


def _value(c: _Cursor, vtype: int, key: str, depth: int, keep: dict[str, Any] | None = None) -> Any:
    if vtype in SCALARS:
        _, fmt, size = SCALARS[vtype]
        v = c.unpack(fmt, size, f"value of {key!r}")
        return v
    if vtype == T_STRING:
        return c.string(f"value of {key!r}")
    if vtype == T_ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise c.fail(f"{key!r} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        itype = c.u32(f"item type of {key!r}")
        count = c.u64(f"length of {key!r}")
        if itype in SCALARS:
            size = SCALARS[itype][2]
            c.need(count * size, f"array {key!r} of {count} items")
            arr = np.frombuffer(c.buf, dtype=NUMPY_DTYPES[itype], count=count, offset=c.pos).copy()
            c.pos += count * size
            return arr
        if itype == T_STRING:
            start = c.pos
            items = _string_array(c, key, count)
            if keep is not None and depth == 0:
                keep[key] = items
            return ArraySummary("string", len(items), hashlib.sha256(c.buf[start : c.pos]).hexdigest())
        if itype == T_ARRAY:
            c.need(count * 12, f"array {key!r} of {count} arrays")
            for _ in range(count):
                _value(c, T_ARRAY, key, depth + 1)
            return ArraySummary("array", count)
        raise c.fail(f"array {key!r} has unknown item type {itype}")
    raise c.fail(f"metadata {key!r} has unknown value type {vtype}")


def _string_array(c: _Cursor, key: str, count: int | None = None) -> list[str]:
    if count is None:
        itype = c.u32(f"item type of {key!r}")
        if itype != T_STRING:
            raise c.fail(f"{key!r} must be an array of strings, has item type {itype}")
        count = c.u64(f"length of {key!r}")
    c.need(count * 8, f"array {key!r} of {count} strings")  # every string has an 8-byte length
    buf, pos, size, out = c.buf, c.pos, c.size, []
    unpack = struct.unpack_from
    for i in range(count):
        if pos + 8 > size:
            c.pos = pos
            raise c.fail(f"item {i} of {key!r} runs past the end of the file")
        (n,) = unpack("<Q", buf, pos)
        pos += 8
        if n > size - pos:
            c.pos = pos
            raise c.fail(f"item {i} of {key!r} is {n} bytes long but only {size - pos} remain")
        out.append(bytes(buf[pos : pos + n]).decode("utf-8", "surrogateescape"))
        pos += n
    c.pos = pos
    return out
