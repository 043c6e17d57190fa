"""Read zip-based ``torch.save`` archives the way ``torch.load`` does, refusing every ambiguity.

``torch.load`` (``PyTorchFileReader``, miniz) takes the archive name from the first member's folder
and reads ``<archive>/data.pkl`` through the central directory. Scanners that read the zip differently
from the loader have been bypassed repeatedly (CVE-2025-1944 name tampering, CVE-2025-1945 flag bits,
CVE-2025-10156 CRC errors, data prepended before the first header). So anything on which two zip
readers could disagree is refused outright: duplicate names, local header names that differ from the
central directory, encryption, unknown compression, CRC mismatches, absolute or ``..`` paths, a first
member not at offset 0. Pickle members are decompressed (bounded) and handed to the opcode reader.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bastion.errors import UnusableInput
from bastion.formats.budget import MAX_PICKLE_BYTES, ScanBudget, exceeded
from bastion.formats.numpy_npy import NpyHeader, read_npy_header
from bastion.formats.pickle_ops import PickleAnalysis, analyse_buffer

ZIP_MAGIC = b"PK\x03\x04"
#: A real data.pkl is kilobytes to a few megabytes; this bounds a decompression bomb.
MAX_PICKLE_MEMBER = MAX_PICKLE_BYTES
_CHUNK = 8 << 20
#: What zipfile raises on a malformed archive (NotImplementedError: unknown versions and methods).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    ValueError,
    OSError,
    NotImplementedError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
)


@dataclass(frozen=True)
class TorchArchive:
    """A torch zip archive: its member names and the analysis of each pickle member."""

    path: Path
    archive_name: str
    members: tuple[str, ...]
    pickles: dict[str, PickleAnalysis] = field(default_factory=dict)
    #: "torch" for torch.save archives, "npz" for numpy.savez archives (members are .npy arrays)
    kind: str = "torch"
    arrays: dict[str, NpyHeader] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Summary as a plain mapping."""
        return {
            "format": "torch-zip" if self.kind == "torch" else "npz",
            "archive": self.archive_name,
            "members": len(self.members),
            "pickles": {k: v.to_json() for k, v in self.pickles.items()},
        }


def _bad(path: Path, what: str) -> UnusableInput:
    return UnusableInput(
        f"{path}: zip archive cannot be read unambiguously (as torch.load or numpy.load would): {what}",
        hint="Re-export the checkpoint with torch.save, or better, convert it to safetensors.",
    )


def read_torch_zip(
    path: Path, budget: ScanBudget | None = None, fileobj: BinaryIO | None = None
) -> TorchArchive:
    """Open the zip at ``path``, check it strictly, and analyse every ``.pkl`` member symbolically.

    ``budget`` bounds the work across all members (one per artifact); ``fileobj`` reads the archive
    from an open stream instead (a zip found inside another container), ``path`` then only names it.
    """
    budget = budget if budget is not None else ScanBudget()
    try:
        with path.open("rb") if fileobj is None else _borrowed(fileobj) as fh:
            if fh.read(4) != ZIP_MAGIC:
                raise _bad(path, "it does not start with a zip local file header")
            declared = _declared_members(fh)
            if declared is not None and declared > budget.members:
                # refused before zipfile parses (and allocates) a central directory of that size
                budget.take_members(declared, str(path))
            fh.seek(0)
            try:
                zf = zipfile.ZipFile(fh)
            except _ZIP_ERRORS as exc:
                raise _bad(path, f"invalid zip structure ({exc})") from exc
            with zf:
                return _read(path, zf, budget)
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc


def _declared_members(fh: BinaryIO) -> int | None:
    """The member count the end-of-central-directory record declares (None if absent or zip64)."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(max(0, size - (22 + 65535)))
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    total = int(struct.unpack_from("<H", tail, at + 10)[0])
    if total != 0xFFFF:
        return total
    # zip64: the locator just before the record points at the zip64 record, which holds the count
    loc = tail[at - 20 : at] if at >= 20 else b""
    if not loc.startswith(b"PK\x06\x07"):
        return None
    fh.seek(struct.unpack_from("<Q", loc, 8)[0])
    rec = fh.read(56)
    if len(rec) < 40 or not rec.startswith(b"PK\x06\x06"):
        return None
    return int(struct.unpack_from("<Q", rec, 32)[0])


@contextlib.contextmanager
def _borrowed(fh: BinaryIO) -> Iterator[BinaryIO]:
    yield fh  # the caller owns the stream and closes it


def _read(path: Path, zf: zipfile.ZipFile, budget: ScanBudget) -> TorchArchive:
    infos = zf.infolist()
    if not infos:
        raise _bad(path, "the archive is empty")
    budget.take_members(len(infos), str(path))
    names = [i.filename for i in infos]
    seen: set[str] = set()
    for info in infos:
        n = info.filename
        if n in seen:
            # zipfile keeps the last duplicate, miniz the first: a scanner and a loader would read
            # different bytes under the same name.
            raise _bad(path, f"duplicate member name {n!r}")
        seen.add(n)
        if n.startswith("/") or "\\" in n or "\x00" in n or ".." in n.split("/") or "" in n.split("/")[:-1]:
            raise _bad(path, f"odd member path {n!r}")
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {n!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(path, f"member {n!r} uses compression method {info.compress_type}")
    if min(i.header_offset for i in infos) != 0:
        raise _bad(path, "data precedes the first member (a prepended or concatenated archive)")
    archive = names[0].split("/", 1)[0] if "/" in names[0] else ""
    data_pkl = f"{archive}/data.pkl" if archive else "data.pkl"
    if data_pkl not in seen:
        if all(n.endswith(".npy") for n in names):
            return _read_npz(path, zf, infos, budget)
        raise _bad(path, f"no {data_pkl!r} (the record torch.load reads); this is not a torch.save archive")
    pickles: dict[str, PickleAnalysis] = {}
    for info in infos:
        try:
            if info.filename.endswith(".pkl"):
                pickles[info.filename] = _analyse_member(path, zf, info, budget)
            else:
                _check_crc(path, zf, info, budget)
        except _ZIP_ERRORS as exc:
            raise _bad(path, f"member {info.filename!r}: {exc}") from exc
    return TorchArchive(path, archive, tuple(names), pickles)


def _analyse_member(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: ScanBudget
) -> PickleAnalysis:
    if info.file_size > MAX_PICKLE_MEMBER:
        raise exceeded(
            f"{path}:{info.filename}", f"pickle member of {info.file_size} bytes (limit {MAX_PICKLE_MEMBER})"
        )
    # ZipFile.open checks the local header name against the central directory; reading to the end
    # checks the CRC. Read with a bound so a lying file_size cannot inflate memory.
    with zf.open(info) as member:
        data = member.read(MAX_PICKLE_MEMBER + 1)
        _inflated(path, info, len(data), budget)
        if len(data) > MAX_PICKLE_MEMBER:
            raise exceeded(
                f"{path}:{info.filename}", f"pickle member inflates past {MAX_PICKLE_MEMBER} bytes"
            )
    return analyse_buffer(data, budget)


def _inflated(path: Path, info: zipfile.ZipInfo, n: int, budget: ScanBudget) -> None:
    # Stored members cost what the file holds; only decompression can multiply the work.
    if info.compress_type != zipfile.ZIP_STORED:
        budget.take_inflated(n, f"{path}:{info.filename}")


def _check_crc(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: ScanBudget) -> None:
    with zf.open(info) as member:
        while chunk := member.read(_CHUNK):
            _inflated(path, info, len(chunk), budget)


def _read_npz(
    path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], budget: ScanBudget
) -> TorchArchive:
    """numpy.savez archive: every member is an .npy; object arrays carry pickles and are analysed."""
    pickles: dict[str, PickleAnalysis] = {}
    arrays: dict[str, NpyHeader] = {}
    for info in infos:
        try:
            with zf.open(info) as member:
                header = read_npy_header(member, f"{path}:{info.filename}")  # type: ignore[arg-type]
                arrays[info.filename] = header
                if header.is_object:
                    data = member.read(MAX_PICKLE_MEMBER + 1)
                    _inflated(path, info, len(data), budget)
                    if len(data) > MAX_PICKLE_MEMBER:
                        raise exceeded(
                            f"{path}:{info.filename}", f"object array exceeds {MAX_PICKLE_MEMBER} bytes"
                        )
                    pickles[info.filename] = analyse_buffer(data, budget)
                while chunk := member.read(_CHUNK):  # drain so the CRC is verified
                    _inflated(path, info, len(chunk), budget)
        except _ZIP_ERRORS as exc:
            raise _bad(path, f"member {info.filename!r}: {exc}") from exc
    return TorchArchive(path, "", tuple(i.filename for i in infos), pickles, "npz", arrays)
