"""A small, bounded reader of a GGUF file's header key/values (never the tensor data).

Identification only needs what the file *says* about itself (``general.*`` and the tokenizer), so this
reads the header and stops before the tensor-info table. Every length read from the file is checked
against a bound before anything is allocated: a crafted header cannot make us allocate gigabytes or
loop for ever. Large arrays (the tokenizer vocabulary) are not kept; they are folded into a SHA-256
digest of their raw bytes, which identifies the tokenizer without holding 262k strings in memory.

When the ``vet`` branch lands ``bastion.formats.gguf``, identification should switch to it; this reader
stays deliberately minimal until then.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

from bastion.errors import UnusableInput

MAGIC = b"GGUF"
# Bounds (why: a header is a few MB at most; anything larger is malformed or hostile).
MAX_KV = 4096
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 4 * 1024 * 1024  # chat templates are the largest single strings (tens of KB)
MAX_ARRAY_ITEMS = 8 * 1024 * 1024  # vocabularies are ~262k; leave ample headroom
MAX_HEADER_BYTES = 256 * 1024 * 1024  # whole KV section, including the vocabulary
KEEP_ARRAY_ITEMS = 16  # arrays longer than this are summarised (count + digest), not kept

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

Scalar = int | float | bool | str


@dataclass(frozen=True)
class ArraySummary:
    """A long array kept only as its element type, length and the SHA-256 of its raw bytes."""

    item_type: int
    count: int
    sha256: str


@dataclass(frozen=True)
class GGUFHeader:
    """The header of a GGUF file: version, tensor count and its key/values."""

    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Scalar | list[Scalar] | ArraySummary] = field(default_factory=dict)

    def text(self, key: str) -> str | None:
        """The value of ``key`` if it is a string, else None."""
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh = fh
        self.path = path
        self.consumed = 0

    def take(self, n: int, digest: hashlib._Hash | None = None) -> bytes:
        self.consumed += n
        if self.consumed > MAX_HEADER_BYTES:
            self.fail(f"header is larger than {MAX_HEADER_BYTES // (1024 * 1024)} MiB")
        data = self.fh.read(n)
        if len(data) != n:
            self.fail("file ends inside the header (truncated)")
        if digest is not None:
            digest.update(data)
        return data

    def unpack(self, fmt: str, digest: hashlib._Hash | None = None) -> Scalar:
        value: Scalar = struct.unpack(fmt, self.take(struct.calcsize(fmt), digest))[0]
        return value

    def length(self, limit: int, what: str, digest: hashlib._Hash | None = None) -> int:
        n = int(self.unpack("<Q", digest))
        if n > limit:
            self.fail(f"{what} claims {n:,} which exceeds the bound of {limit:,}")
        return n

    def string(self, limit: int = MAX_STRING_BYTES, digest: hashlib._Hash | None = None) -> str:
        raw = self.take(self.length(limit, "a string length", digest), digest)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("a string is not valid UTF-8")

    def fail(self, problem: str) -> NoReturn:
        raise UnusableInput(
            f"{self.path}: not a readable GGUF header: {problem}",
            hint="The file is damaged or crafted; obtain it again from its source and run 'bastion vet'.",
        )


def _value(r: _Reader, vtype: int) -> Scalar | list[Scalar] | ArraySummary:
    if vtype in _SCALARS:
        return r.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        return r.string()
    if vtype == _ARRAY:
        item_type = int(r.unpack("<I"))
        count = r.length(MAX_ARRAY_ITEMS, "an array length")
        if item_type == _ARRAY:
            r.fail("nested arrays are not part of GGUF")
        if item_type != _STRING and item_type not in _SCALARS:
            r.fail(f"unknown array item type {item_type}")
        digest = hashlib.sha256()
        kept: list[Scalar] = []
        for _ in range(count):
            if item_type == _STRING:
                item: Scalar = r.string(digest=digest)
            else:
                item = r.unpack(_SCALARS[item_type], digest)
            if count <= KEEP_ARRAY_ITEMS:
                kept.append(item)
        if count <= KEEP_ARRAY_ITEMS:
            return kept
        return ArraySummary(item_type, count, digest.hexdigest())
    r.fail(f"unknown value type {vtype}")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Read the key/values of the GGUF file at ``path``; raise UnusableInput if it is not GGUF."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc
    with fh:
        r = _Reader(fh, path)
        if r.fh.read(4) != MAGIC:
            r.fail("the file does not start with the GGUF magic bytes")
        version = int(r.unpack("<I"))
        if version not in (2, 3):
            r.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
        tensor_count = int(r.unpack("<Q"))
        kv_count = r.length(MAX_KV, "the key/value count")
        metadata: dict[str, Scalar | list[Scalar] | ArraySummary] = {}
        for _ in range(kv_count):
            key = r.string(MAX_KEY_BYTES)
            vtype = int(r.unpack("<I"))
            metadata[key] = _value(r, vtype)
    return GGUFHeader(path=path, version=version, tensor_count=tensor_count, metadata=metadata)
