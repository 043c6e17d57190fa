"""Wrappers a pickle travels in: gzip, bz2, xz/lzma and zlib streams, tar archives; and plain text.

Loaders open what their caller names (``joblib.load`` decompresses zlib/gzip/bz2/xz/lzma by magic,
``torch.load`` reads legacy tar checkpoints, ``pickle.load(gzip.open(...))`` is common), so the name
on the file says nothing about whether a pickle is inside. These readers recognise each wrapper by its
magic bytes and unwrap it in memory under the artifact's :class:`~bastion.formats.budget.ScanBudget`:
every decompressed byte is counted, a stream is never inflated past ``MAX_PICKLE_BYTES``, and a tar
archive's members are counted and read one by one. Nothing is written to disk.
"""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from bastion.formats.budget import MAX_PICKLE_BYTES, ScanBudget, exceeded

_CHUNK = 1 << 20
#: Bytes needed to recognise every format here (the tar magic sits at offset 257).
HEAD_BYTES = 512


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def compression_of(head: bytes) -> str | None:
    """The compression a stream starting with ``head`` uses, or None."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4] in b"123456789" and len(head) > 3:
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


def is_tar(head: bytes) -> bool:
    """True for a POSIX (ustar/pax/gnu) tar header: the magic at offset 257."""
    return head[257:262] == b"ustar"


def looks_like_text(sample: bytes) -> bool:
    """True when ``sample`` (the start of a file) is UTF-8 text without NUL bytes."""
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the end of the sample is still text
        return exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data"
    return True


def _decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)


@dataclass(frozen=True)
class Inflated:
    """What came out of a compressed stream, and the error that stopped it early, if any."""

    data: bytes
    error: str | None = None


def inflate(stream: BinaryIO, kind: str, budget: ScanBudget, where: str) -> Inflated:
    """Decompress ``stream`` (``kind`` from :func:`compression_of`) into memory, bounded.

    Raises :class:`~bastion.formats.budget.BudgetExceeded` past ``MAX_PICKLE_BYTES`` or the artifact's
    inflation budget. A corrupt or truncated stream returns what decompressed before the break, with
    the error: a loader that streams (``pickle.load(gzip.open(...))``) runs that much before it fails.
    """
    cap = min(MAX_PICKLE_BYTES, max(budget.inflated, 0))
    out = bytearray()
    d = _decompressor(kind)
    error: str | None = None
    try:
        while len(out) <= cap:
            data = getattr(d, "unused_data", b"") if getattr(d, "eof", False) else stream.read(_CHUNK)
            if getattr(d, "eof", False):
                if kind == "zlib" or not data.strip(b"\x00"):
                    break
                d = _decompressor(kind)  # concatenated members, read on as the loaders do
            elif not data:
                if not getattr(d, "eof", False):
                    error = f"{kind} stream is truncated"
                break
            out += d.decompress(data, cap + 1 - len(out))
            # output still held back by the bound: zlib keeps the input, bz2/lzma the output
            while len(out) <= cap:
                more: bytes = getattr(d, "unconsumed_tail", b"")
                held: bool = not getattr(d, "needs_input", True) and not getattr(d, "eof", False)
                if not more and not held:
                    break
                out += d.decompress(more, cap + 1 - len(out))
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        error = f"{kind} stream is corrupt after {len(out)} bytes ({exc})"
    budget.take_inflated(len(out), where)
    if len(out) > cap:
        raise exceeded(where, f"{kind} stream inflates past {cap >> 20} MiB")
    return Inflated(bytes(out), error)


@dataclass(frozen=True)
class TarMember:
    """One regular file in a tar archive, read into memory."""

    name: str
    data: bytes


def tar_members(stream: BinaryIO, budget: ScanBudget, where: str) -> Iterator[TarMember]:
    """Each regular file of the (uncompressed) tar in ``stream``, bounded by the budget.

    Raises ``tarfile.TarError`` on a malformed archive and ``BudgetExceeded`` past a bound.
    """
    with tarfile.open(fileobj=stream, mode="r:") as tf:
        while True:
            member = tf.next()
            if member is None:
                return
            budget.take_members(1, where)
            if not member.isfile():
                continue
            if member.size > MAX_PICKLE_BYTES:
                raise exceeded(f"{where}:{member.name}", f"tar member of {member.size} bytes")
            fh = tf.extractfile(member)
            data = fh.read(member.size) if fh is not None else b""
            yield TarMember(member.name, data)


def as_stream(data: bytes) -> BinaryIO:
    """An in-memory stream over ``data`` (for readers that take a file object)."""
    return io.BytesIO(data)


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def is_sentencepiece(buf: bytes | memoryview) -> bool:
    """True when ``buf`` is a SentencePiece model (``tokenizer.model``): protobuf wire format from the
    first byte to the last whose top-level fields are ModelProto's (1 pieces ... 5 denormalizer_spec),
    all length-delimited, with at least one piece."""
    pos, pieces = 0, 0
    try:
        while pos < len(buf):
            tag, pos = _varint(buf, pos)
            field, wire = tag >> 3, tag & 7
            if not 1 <= field <= 5 or wire != 2:
                return False
            n, pos = _varint(buf, pos)
            pos += n
            pieces += field == 1
    except ValueError:
        return False
    return pos == len(buf) and pieces > 0
