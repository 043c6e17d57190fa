"""Decode pickle opcodes and their arguments from a buffer, without executing or copying anything large.

``pickletools.genops`` reads through a file object (about 3 µs an opcode) and reads every byte
argument into memory, so a crafted stream costs time and RAM in proportion to what it declares. This
decoder walks a ``bytes`` or ``mmap`` buffer by offset: arguments that can matter to a scan (integers,
short text for module and class names) are decoded, large byte and text arguments are skipped by
their length without being read. The opcode table is taken from ``pickletools`` so it matches the
interpreter's own list of opcodes and their documented stack effects.
"""

from __future__ import annotations

import codecs
import mmap
import pickletools
import struct
from dataclasses import dataclass
from typing import Any

Buffer = bytes | mmap.mmap
#: Longest text argument kept as a value; longer text is skipped (no module or class name is this long).
MAX_KEEP = 1024
#: A protocol-0 text line longer than this is refused: readline on a crafted file would read it all.
MAX_LINE = 1 << 20

(
    A_NONE,
    A_U1,
    A_U2,
    A_I4,
    A_U4,
    A_U8,
    A_F8,
    A_LONG1,
    A_LONG4,
    A_LINE,
    A_QUOTED,
    A_PAIR,
    A_STR1,
    A_STR4,
    A_BYTES1,
    A_BYTES4,
    A_BYTES8,
    A_USTR1,
    A_USTR4,
    A_USTR8,
    A_USTRNL,
) = range(21)

_ARG_KINDS = {
    None: A_NONE,
    "uint1": A_U1,
    "uint2": A_U2,
    "int4": A_I4,
    "uint4": A_U4,
    "uint8": A_U8,
    "float8": A_F8,
    "long1": A_LONG1,
    "long4": A_LONG4,
    "decimalnl_short": A_LINE,
    "decimalnl_long": A_LINE,
    "floatnl": A_LINE,
    "stringnl_noescape": A_LINE,
    "stringnl": A_QUOTED,
    "stringnl_noescape_pair": A_PAIR,
    "string1": A_STR1,
    "string4": A_STR4,
    "bytes1": A_BYTES1,
    "bytes4": A_BYTES4,
    "bytes8": A_BYTES8,
    "bytearray8": A_BYTES8,
    "unicodestring1": A_USTR1,
    "unicodestring4": A_USTR4,
    "unicodestring8": A_USTR8,
    "unicodestringnl": A_USTRNL,
}
_FIXED = {A_U2: "<H", A_I4: "<i", A_U4: "<I", A_U8: "<Q", A_F8: "<d"}


#: How the symbolic reader treats an opcode: by its documented stack effect (GENERIC, or PUSH1 for the
#: common "push one value, pop nothing" case) or by a handler of its own.
(
    GENERIC,
    PUSH1,
    TEXT,
    PROTO,
    STOP,
    GLOBAL,
    INST,
    STACK_GLOBAL,
    PUT,
    MEMOIZE,
    GET,
    DUP,
    POP,
    EXT,
    CALL,
    NEWOBJ_EX,
    OBJ,
    BUILD,
    INT,
) = range(19)
_HANDLERS = {
    "STRING": TEXT,
    "BINSTRING": TEXT,
    "SHORT_BINSTRING": TEXT,
    "UNICODE": TEXT,
    "SHORT_BINUNICODE": TEXT,
    "BINUNICODE": TEXT,
    "BINUNICODE8": TEXT,
    "PROTO": PROTO,
    "STOP": STOP,
    "GLOBAL": GLOBAL,
    "INST": INST,
    "STACK_GLOBAL": STACK_GLOBAL,
    "PUT": PUT,
    "BINPUT": PUT,
    "LONG_BINPUT": PUT,
    "MEMOIZE": MEMOIZE,
    "GET": GET,
    "BINGET": GET,
    "LONG_BINGET": GET,
    "DUP": DUP,
    "POP": POP,
    "EXT1": EXT,
    "EXT2": EXT,
    "EXT4": EXT,
    "REDUCE": CALL,
    "NEWOBJ": CALL,
    "NEWOBJ_EX": NEWOBJ_EX,
    "OBJ": OBJ,
    "BUILD": BUILD,
    "INT": INT,
    "LONG": INT,
    "BININT": INT,
    "LONG1": INT,
    "LONG4": INT,
}


@dataclass(frozen=True)
class OpSpec:
    """One opcode: its name, handler, argument kind and stack effect (``mark``: pops to a MARK first)."""

    name: str
    handler: int
    arg: int
    mark: bool
    pops: int
    pushes: tuple[bool, ...]  # True for a MARK, False for an opaque value


def _spec(op: pickletools.OpcodeInfo) -> OpSpec:
    before = op.stack_before
    mark = pickletools.markobject in before
    pops = before.index(pickletools.markobject) if mark else len(before)
    pushes = tuple(item is pickletools.markobject for item in op.stack_after)
    handler = _HANDLERS.get(op.name, PUSH1 if not before and pushes == (False,) else GENERIC)
    return OpSpec(op.name, handler, _ARG_KINDS[op.arg.name if op.arg else None], mark, pops, pushes)


#: Opcode byte -> spec; None for bytes that are not opcodes (the unpickler raises on them).
TABLE: list[OpSpec | None] = [None] * 256
for _op in pickletools.opcodes:
    TABLE[ord(_op.code)] = _spec(_op)


def _line(buf: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    nl = buf.find(b"\n", pos, min(end, pos + MAX_LINE))
    if nl < 0:
        raise ValueError("text argument without a newline (or longer than 1 MiB)")
    return bytes(buf[pos:nl]), nl + 1


def _sized(buf: Buffer, pos: int, end: int, n: int) -> tuple[bytes | None, int]:
    """``n`` bytes at ``pos`` if short enough to keep, else None (skipped); raises if truncated."""
    if n < 0 or pos + n > end:
        raise ValueError(f"argument of {n} bytes runs past the end of the stream")
    return (bytes(buf[pos : pos + n]) if n <= MAX_KEEP else None), pos + n


def _text(raw: bytes | None, encoding: str) -> str | None:
    return None if raw is None else raw.decode(encoding, "surrogatepass" if encoding == "utf-8" else "strict")


def read_arg(kind: int, buf: Buffer, pos: int, end: int) -> tuple[Any, int]:
    """The decoded argument of kind ``kind`` at ``pos`` and the offset after it.

    Integers come back as ``int``, names and short text as ``str``, a ``GLOBAL`` pair as a tuple,
    protocol-0 numeric lines as ``bytes``; anything skipped is ``None``. Raises ``ValueError`` (or
    ``UnicodeDecodeError``) where the unpickler would fail.
    """
    if kind == A_NONE:
        return None, pos
    if kind == A_U1:
        if pos >= end:
            raise ValueError("argument runs past the end of the stream")
        return buf[pos], pos + 1
    fmt = _FIXED.get(kind)
    if fmt is not None:
        size = struct.calcsize(fmt)
        if pos + size > end:
            raise ValueError("argument runs past the end of the stream")
        return struct.unpack_from(fmt, buf, pos)[0], pos + size
    if kind in (A_LINE, A_USTRNL, A_QUOTED):
        raw, pos = _line(buf, pos, end)
        if kind == A_LINE:
            return raw, pos
        if kind == A_USTRNL:
            return (raw.decode("raw-unicode-escape") if len(raw) <= MAX_KEEP else None), pos
        if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
            raise ValueError("STRING argument is not quoted")
        if len(raw) > MAX_KEEP:
            return None, pos
        return codecs.escape_decode(raw[1:-1])[0].decode("latin-1"), pos  # type: ignore[attr-defined]
    if kind == A_PAIR:
        module, pos = _line(buf, pos, end)
        name, pos = _line(buf, pos, end)
        return (module.decode("utf-8"), name.decode("utf-8")), pos
    if kind in (A_LONG1, A_STR1, A_BYTES1, A_USTR1):
        if pos >= end:
            raise ValueError("argument runs past the end of the stream")
        n, pos = buf[pos], pos + 1
    else:
        wide = 4 if kind in (A_LONG4, A_STR4, A_BYTES4, A_USTR4) else 8
        if pos + wide > end:
            raise ValueError("argument runs past the end of the stream")
        signed = kind in (A_LONG4, A_STR4)  # pickletools: long4 and string4 lengths are signed
        n = int.from_bytes(buf[pos : pos + wide], "little", signed=signed)
        pos += wide
    kept, pos = _sized(buf, pos, end, n)
    if kind in (A_LONG1, A_LONG4):
        return (int.from_bytes(kept, "little", signed=True) if kept is not None else None), pos
    if kind in (A_STR1, A_STR4):
        return _text(kept, "latin-1"), pos
    if kind in (A_USTR1, A_USTR4, A_USTR8):
        return _text(kept, "utf-8"), pos
    return None, pos  # bytes and bytearrays are never needed by a scan
