"""Identify a model file by its content first and its name second.

Extensions lie (CVE-2025-1889, CVE-2025-10155: a raw pickle named ``.bin`` or ``.txt``), so magic
bytes decide: ``GGUF``, a zip local header, a pickle ``PROTO`` opcode, a safetensors length prefix
followed by ``{``, gzip/bz2/xz/lzma/zlib and tar headers (``compressed``, ``tar``: a pickle may be
inside). The name only adds formats that have no magic (protocol 0/1 pickles, JSON files recognised by
their Hugging Face file names, Python files) and names a format that the content then fails to match,
which the scanner reports as a structural failure rather than skipping the file. A file that matches
neither is still read by the scanner: whatever parses as a pickle is scanned as one.
"""

from __future__ import annotations

import struct
from pathlib import Path

from bastion.formats.containers import compression_of, is_tar

#: Extensions under which torch.load / pickle.load are used on raw pickles.
PICKLE_EXTENSIONS = {
    ".pkl",
    ".pickle",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".joblib",
    ".dat",
    ".data",
    ".mar",
    ".sav",
    ".p",
    ".pk",
}
JSON_NAMES = {
    "config.json": "hf-config",
    "tokenizer_config.json": "hf-tokenizer-config",
    "tokenizer.json": "hf-tokenizer",
}


def sniff(head: bytes, size: int) -> str | None:
    """Format named by the first bytes of a file (``head``: its first 512 bytes, or all of a shorter one)."""
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n <= size - 8:
            return "safetensors"
    if compression_of(head) is not None:
        return "compressed"
    if is_tar(head):
        return "tar"
    return None


def detect_format(path: Path, head: bytes, size: int) -> str | None:
    """The format to parse ``path`` as, or None if it is not a model artifact we know."""
    by_content = sniff(head, size)
    if by_content is not None:
        return by_content
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".npy":
        return "npy"
    if suffix in PICKLE_EXTENSIONS:
        return "pickle"
    if name in JSON_NAMES:
        return JSON_NAMES[name]
    if suffix == ".jinja":
        return "chat-template"
    if suffix == ".py":
        return "python"
    return None
