"""NumPy ``.npy`` headers, read without numpy: an object-dtype array's payload is a pickle.

``numpy.load(allow_pickle=True)`` unpickles the data of an object array, so an ``.npy`` file (alone or
inside an ``.npz``) is a pickle carrier. The header is a Python dict literal; it is read with
``ast.literal_eval`` (literals only, never evaluated code) under numpy's own size cap.
"""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from bastion.errors import UnusableInput

NPY_MAGIC = b"\x93NUMPY"
#: numpy refuses headers above 10,000 bytes by default (max_header_size); we allow a little more.
MAX_HEADER = 65_536


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header: dtype description, shape, order, and where the data starts."""

    descr: Any
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def is_object(self) -> bool:
        """True when the payload is a pickle (object dtype anywhere in the description)."""
        return _has_object(self.descr)

    def to_json(self) -> dict[str, Any]:
        """The header as a plain mapping."""
        return {
            "format": "npy",
            "descr": repr(self.descr),
            "shape": list(self.shape),
            "object": self.is_object,
        }


def _has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        return any(isinstance(f, tuple) and len(f) >= 2 and _has_object(f[1]) for f in descr)
    return True  # anything else is not a description numpy writes: treat as the dangerous case


def read_npy_header(fh: BinaryIO, name: str) -> NpyHeader:
    """Read the header at the current position of ``fh`` (``name`` is used in messages)."""

    def bad(what: str) -> UnusableInput:
        return UnusableInput(
            f"{name}: malformed .npy header: {what}", hint="Re-export the array with numpy.save."
        )

    head = fh.read(8)
    if len(head) < 8 or head[:6] != NPY_MAGIC:
        raise bad("missing the \\x93NUMPY magic")
    major = head[6]
    if major == 1:
        raw_len = fh.read(2)
        (hlen,) = struct.unpack("<H", raw_len) if len(raw_len) == 2 else (-1,)
    elif major in (2, 3):
        raw_len = fh.read(4)
        (hlen,) = struct.unpack("<I", raw_len) if len(raw_len) == 4 else (-1,)
    else:
        raise bad(f"unknown format version {major}")
    if not 0 <= hlen <= MAX_HEADER:
        raise bad(f"header length {hlen} outside 0..{MAX_HEADER}")
    raw = fh.read(hlen)
    if len(raw) != hlen:
        raise bad("truncated header")
    try:
        header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, RecursionError, MemoryError, UnicodeDecodeError, TypeError) as exc:
        raise bad(f"not a Python literal ({type(exc).__name__})") from exc
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise bad("expected exactly descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad(f"shape {shape!r} is not a tuple of non-negative integers")
    return NpyHeader(header["descr"], shape, bool(header["fortran_order"]), (10 if major == 1 else 12) + hlen)
