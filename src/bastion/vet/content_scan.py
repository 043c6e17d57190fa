"""Scan by content what names do not announce: compressed and tar-wrapped pickles, unnamed pickles,
unknown binaries.

``model.sav`` holding a protocol-0 pickle, ``.pkl.gz``, a zlib-compressed ``.joblib``, a legacy tar
checkpoint: each loads through some loader and each once passed because its name was not on a list.
Here every wrapper is opened by its magic bytes (``bastion.formats.containers``), whatever is inside is
scanned as if it were a file of its own (pickle, ``.npy``, torch zip, a further wrapper), and a file
that is none of these is read as a pickle anyway: if it parses as one it is scanned as one. What is left
is text (fine) or an unknown binary, which is at least ``warn``: Bastion cannot say what loads it.
"""

from __future__ import annotations

import io
import mmap
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from bastion.errors import UnusableInput
from bastion.formats import analyse_pickle, read_npy_header, read_torch_zip, sniff
from bastion.formats.budget import BudgetExceeded, ScanBudget, exceeded
from bastion.formats.containers import (
    HEAD_BYTES,
    compression_of,
    inflate,
    is_sentencepiece,
    looks_like_text,
    tar_members,
)
from bastion.formats.pickle_ops import PickleAnalysis, analyse_buffer
from bastion.formats.torch_zip import TorchArchive
from bastion.vet.findings import Finding, Severity
from bastion.vet.pickle_scan import scan_pickle

#: Wrappers inside wrappers (a .tar.gz is two); deeper nesting is refused rather than followed.
MAX_DEPTH = 4
#: A tokenizer.model is a few megabytes; larger files are not walked as one.
MAX_SENTENCEPIECE = 64 << 20
#: Opcodes read to decide whether unnamed bytes are a pickle: text fails within a few opcodes.
SNIFF_OPS = 10_000


def pickle_note(rel: str, where: str = "") -> Finding:
    """The info finding every pickle-bearing file gets."""
    return Finding(
        "PICKLE_FORMAT",
        Severity.INFO,
        rel,
        where,
        "pickle-based weights can carry code; every import was checked, but prefer safetensors",
    )


def parses_as_pickle(buf: bytes | mmap.mmap) -> bool:
    """True when ``buf`` reads as a pickle though nothing announced one.

    That is: it calls an importable name before any break (a protocol-0 payload, or one that breaks
    the stream after it ran), or it is nothing but well-formed pickles, or ``SNIFF_OPS`` opcodes in a
    row parse. Text and other binary formats fail within a few opcodes; a text file that happens to
    start with a tiny pickle ("N. ...") is not one, because what follows is not.
    """
    probe = analyse_buffer(buf, ScanBudget(ops=SNIFF_OPS))
    kinds = {a.kind for a in probe.anomalies}
    if any(g.called and g.plausible for g in probe.globals):
        return True
    return "malformed" not in kinds and (probe.pickles > 0 or "budget" in kinds)


def sniff_file(f: Path) -> str:
    """``"pickle"``, ``"text"``, ``"sentencepiece"`` or ``"binary"``: a file no magic or name named."""
    try:
        with f.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if parses_as_pickle(mm):
                return "pickle"
            if looks_like_text(mm[: 64 << 10]):
                return "text"
            # a tokenizer.model is data for the tokenizer, not code: recognised by its whole structure
            if len(mm) > MAX_SENTENCEPIECE:
                return "binary"
            with memoryview(mm) as view:
                return "sentencepiece" if is_sentencepiece(view) else "binary"
    except (OSError, ValueError) as exc:
        raise UnusableInput(f"cannot read {f}: {exc}", hint="Check permissions.") from exc


def unknown_binary(rel: str, where: str, strict: bool, what: str = "") -> Finding:
    """The finding for bytes Bastion cannot identify: warn (fail with --strict)."""
    return Finding(
        "FILE_UNKNOWN_BINARY",
        Severity.FAIL if strict else Severity.WARN,
        rel,
        where,
        f"unknown binary{what}: not a model format Bastion reads, and not a pickle; whatever loads it "
        f"was not checked",
    )


def pickle_findings(analysis: PickleAnalysis, rel: str, strict: bool, where: str = "") -> list[Finding]:
    """Findings for one analysed pickle, plus the format note."""
    return [*scan_pickle(analysis, rel, strict, where=where), pickle_note(rel, where)]


def archive_findings(archive: TorchArchive, rel: str, strict: bool, prefix: str = "") -> list[Finding]:
    """Findings for every pickle member of a torch zip or npz."""
    out: list[Finding] = []
    for member, analysis in archive.pickles.items():
        out += scan_pickle(analysis, rel, strict, where=f"{prefix}{member}")
    if archive.pickles:
        out.append(pickle_note(rel, prefix.rstrip(":")))
    return out


def scan_wrapped_file(f: Path, rel: str, strict: bool) -> tuple[dict[str, Any], list[Finding]]:
    """A compressed or tar file on disk: unwrap and scan what is inside."""
    budget = ScanBudget()
    try:
        with f.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
            fh.seek(0)
            return _unwrap(fh, head, rel, "", strict, budget, 0)
    except OSError as exc:
        raise UnusableInput(f"cannot read {f}: {exc.strerror or exc}", hint="Check permissions.") from exc


def _unwrap(
    fh: BinaryIO, head: bytes, rel: str, where: str, strict: bool, budget: ScanBudget, depth: int
) -> tuple[dict[str, Any], list[Finding]]:
    if depth >= MAX_DEPTH:
        raise exceeded(f"{rel}:{where}", f"wrappers nested more than {MAX_DEPTH} deep")
    kind = compression_of(head)
    if kind is not None:
        out = inflate(fh, kind, budget, f"{rel}:{where}" if where else rel)
        findings: list[Finding] = []
        if out.error:
            if kind == "zlib" and not out.data:
                return {"format": "other"}, []  # two bytes that only looked like a zlib header
            findings.append(
                Finding(
                    "STRUCTURE_INVALID",
                    Severity.FAIL,
                    rel,
                    where,
                    f"{out.error}; a loader that streams it runs what came before the break",
                )
            )
        inner, found = scan_blob(out.data, rel, _join(where, f"<{kind}>"), strict, budget, depth + 1)
        return {"format": kind, "inner": inner}, findings + found
    members: list[str] = []
    findings = []
    try:
        for m in tar_members(fh, budget, rel):
            members.append(m.name)
            _, found = scan_blob(m.data, rel, _join(where, m.name), strict, budget, depth + 1)
            findings += found
    except tarfile.TarError as exc:
        findings.append(
            Finding("STRUCTURE_INVALID", Severity.FAIL, rel, where, f"tar archive is malformed: {exc}")
        )
    return {"format": "tar", "members": len(members)}, findings


def _join(where: str, part: str) -> str:
    return f"{where}:{part}" if where else part


def scan_blob(
    data: bytes, rel: str, where: str, strict: bool, budget: ScanBudget, depth: int
) -> tuple[dict[str, Any], list[Finding]]:
    """Scan bytes found inside a wrapper (``where`` names the path through the wrappers)."""
    head = data[:HEAD_BYTES]
    fmt = sniff(head, len(data))
    if fmt in ("compressed", "tar"):
        return _unwrap(io.BytesIO(data), head, rel, where, strict, budget, depth)
    try:
        if fmt == "pickle" or (fmt is None and parses_as_pickle(data)):
            analysis = analyse_buffer(data, budget)
            return analysis.to_json(), pickle_findings(analysis, rel, strict, where)
        if fmt == "npy":
            fh = io.BytesIO(data)
            header = read_npy_header(fh, f"{rel}:{where}")
            if not header.is_object:
                return header.to_json(), []
            analysis = analyse_pickle(fh, len(data) - header.data_offset, budget)
            return header.to_json(), pickle_findings(analysis, rel, strict, where)
        if fmt == "zip":
            archive = read_torch_zip(Path(f"{rel}:{where}"), budget, fileobj=io.BytesIO(data))
            return archive.to_json(), archive_findings(archive, rel, strict, f"{where}:")
    except BudgetExceeded:
        raise
    except UnusableInput as exc:
        return {"format": fmt}, [Finding("STRUCTURE_INVALID", Severity.FAIL, rel, where, exc.message)]
    if looks_like_text(data[: 64 << 10]):
        return {"format": "text"}, []
    what = f" ({fmt}) inside a wrapper" if fmt else " inside a wrapper"
    return {"format": fmt or "binary"}, [unknown_binary(rel, where, strict, what)]
