"""``vet_path``: walk a file or model folder, parse every artifact safely, and collect findings.

Each file is identified by content (``bastion.formats.detect``), parsed by its bounded reader, and the
parsed facts are scanned. A parser's refusal (:class:`UnusableInput`) on a file that *claims* a
format becomes a ``STRUCTURE_INVALID`` fail finding: a loader would try to read it, and what we cannot
read is never ``pass``. ``UnusableInput`` itself escapes only when the input as a whole is unusable: a
missing path, an empty file, a single file of a kind Bastion does not know, a folder with no model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput
from bastion.formats import (
    Artifact,
    GGUFInfo,
    SafetensorsInfo,
    analyse_pickle,
    detect_format,
    read_gguf,
    read_hf_config,
    read_json,
    read_safetensors,
    read_tokenizer_added_tokens,
    read_tokenizer_config,
    read_torch_zip,
)
from bastion.formats.budget import BudgetExceeded
from bastion.formats.containers import HEAD_BYTES
from bastion.formats.gguf import ArraySummary
from bastion.formats.gguf_types import FILE_TYPES
from bastion.formats.hf_config import added_tokens_of, hf_config_of, tokenizer_config_of
from bastion.formats.numpy_npy import read_npy_header
from bastion.hashing import file_digest
from bastion.vet.content_scan import (
    archive_findings,
    pickle_findings,
    scan_wrapped_file,
    sniff_file,
    unknown_binary,
)
from bastion.vet.findings import FileReport, Finding, Severity, VetReport, verdict_of
from bastion.vet.template_scan import scan_template
from bastion.vet.unicode_scan import scan_tokens

#: Bound on a folder walk: a model folder has tens of files, not millions.
MAX_FILES = 10_000
Progress = Callable[[str, int], None]


def vet_path(
    path: Path, strict: bool = False, *, digests: bool = True, progress: Progress | None = None
) -> VetReport:
    """Vet the file or model folder at ``path``; ``strict`` turns warnings about code into failures.

    ``progress(name, nbytes)`` is called after each file (for a progress bar); ``digests=False``
    skips hashing (the pipeline that hashes separately, or a quick look).
    """
    path = Path(path)
    if not path.exists():
        raise UnusableInput(f"{path} does not exist", hint="Give the path of a model file or folder.")
    root = path if path.is_dir() else path.parent
    files = _list_files(path)
    findings: list[Finding] = []
    reports: list[FileReport] = []
    for f in files:
        rel = str(f.relative_to(root)) if path.is_dir() else f.name
        rep, found = _vet_file(f, rel, strict, single=not path.is_dir(), digests=digests)
        findings += found
        if rep is not None:
            reports.append(rep)
        if progress is not None:
            progress(rel, rep.size if rep else 0)
    if path.is_dir() and not any(r.format in _MODEL_FORMATS for r in reports):
        raise UnusableInput(
            f"{path} holds no model file Bastion can read (GGUF, safetensors, PyTorch, pickle)",
            hint="Point vet at the model file or the folder that contains its weights.",
        )
    findings += _remote_code(root, reports, strict) if path.is_dir() else []
    return VetReport(str(path), verdict_of(findings), tuple(findings), tuple(reports), strict)


_MODEL_FORMATS = {
    "gguf",
    "safetensors",
    "torch-zip",
    "pickle",
    "npy",
    "npz",
    "gzip",
    "bz2",
    "xz",
    "lzma",
    "zlib",
    "tar",
}


def vet_artifact(artifact: Artifact, strict: bool = False) -> VetReport:
    """Vet an artifact read by ``formats.open_artifact``: its parsed headers, its manifest digests.

    Nothing is re-hashed and no header is parsed twice; the report's digests are the manifest's, so
    the bytes judged here are the bytes admission signs.
    """
    findings: list[Finding] = []
    reports: list[FileReport] = []
    single = not artifact.is_folder
    for af in artifact.files:
        rel = af.name if artifact.is_folder else af.path.name
        rep, found = _scan_file(
            af.path, rel, strict, single, af.size, af.head, af.format, _const(af.digest),
            parsed=af.parsed, error=af.error,
        )
        findings += found
        if rep is not None:
            reports.append(rep)
    if artifact.is_folder and not any(r.format in _MODEL_FORMATS for r in reports):
        raise UnusableInput(
            f"{artifact.path} holds no model file Bastion can read (GGUF, safetensors, PyTorch, pickle)",
            hint="Point vet at the model file or the folder that contains its weights.",
        )
    findings += _remote_code(artifact.path, reports, strict) if artifact.is_folder else []
    return VetReport(str(artifact.path), verdict_of(findings), tuple(findings), tuple(reports), strict)


def _const(digest: str) -> Callable[[], str | None]:
    return lambda: digest


def _list_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        # symlinked folders are listed (and reported by _vet_file) but not descended into
        out += [Path(dirpath) / d for d in sorted(dirnames) if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
        for name in sorted(filenames):
            out.append(Path(dirpath) / name)
            if len(out) > MAX_FILES:
                raise UnusableInput(
                    f"{path} holds more than {MAX_FILES} files", hint="Point vet at one model folder."
                )
    return out


def _vet_file(
    f: Path, rel: str, strict: bool, single: bool, digests: bool
) -> tuple[FileReport | None, list[Finding]]:
    link: list[Finding] = []
    if f.is_symlink():
        # Hugging Face caches are folders of symlinks into a blob store, so file links are followed and
        # the target's bytes are what gets scanned and hashed; the link is still reported because what
        # it points to can be swapped after vetting. Links to folders and dangling links are not followed.
        target = os.readlink(f)
        if not f.is_file():
            sev = Severity.FAIL if strict else Severity.WARN
            what = "a folder" if f.is_dir() else "nothing (dangling)"
            return None, [
                Finding("FILE_SYMLINK", sev, rel, "", f"symbolic link to {target}, {what}: not followed")
            ]
        sev = Severity.WARN if strict else Severity.INFO
        link = [Finding("FILE_SYMLINK", sev, rel, "", f"symbolic link to {target}: the target was scanned")]
    try:
        size = f.stat().st_size
        with f.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise UnusableInput(f"cannot read {f}: {exc.strerror or exc}", hint="Check permissions.") from exc
    fmt = detect_format(f, head, size) if size else "empty"
    rep, found = _scan_file(
        f, rel, strict, single, size, head, fmt, lambda: file_digest(f) if digests else None
    )
    return rep, link + found


def _scan_file(
    f: Path,
    rel: str,
    strict: bool,
    single: bool,
    size: int,
    head: bytes,
    fmt: str | None,
    digest: Callable[[], str | None],
    parsed: Any = None,
    error: UnusableInput | None = None,
) -> tuple[FileReport | None, list[Finding]]:
    if fmt == "shard-index":  # parsed by open_artifact for the shard list; plain JSON to vet
        fmt = None
    if size == 0:
        if single:
            raise UnusableInput(
                f"{f} is empty", hint="The download or copy did not complete; fetch it again."
            )
        return FileReport(rel, "empty", 0, digest()), []
    content = ""
    if fmt is None:
        # Names do not decide: whatever parses as a pickle is scanned as one, other binaries warn.
        content = sniff_file(f)
        fmt = "pickle" if content == "pickle" else None
    if fmt is None:
        if single:
            raise UnusableInput(
                f"{f}: not a model artifact Bastion can read (first bytes {head[:8]!r})",
                hint="vet reads GGUF, safetensors, PyTorch (.bin/.pt/.pth/.ckpt), pickle and Hugging Face "
                "JSON files.",
            )
        card = _readme(f) if f.name.lower() == "readme.md" else {}
        if content == "binary":
            return FileReport(rel, "binary", size, digest(), card), [unknown_binary(rel, "", strict)]
        return FileReport(
            rel, "sentencepiece" if content == "sentencepiece" else "other", size, digest(), card
        ), []
    findings: list[Finding] = []
    meta: dict[str, Any] = {}
    try:
        if error is not None:
            raise error
        meta, findings = _PARSERS[fmt](f, rel, strict, parsed)
    except BudgetExceeded as exc:
        findings = [Finding("FILE_BUDGET_EXCEEDED", Severity.FAIL, rel, "", exc.message)]
        meta = {"format": fmt}
    except UnusableInput as exc:
        findings = [Finding("STRUCTURE_INVALID", Severity.FAIL, rel, "", exc.message)]
        meta = {"format": fmt}
    return FileReport(rel, str(meta.get("format", fmt)), size, digest(), meta), findings


def _readme(f: Path) -> dict[str, Any]:
    """The ``license:`` of a model card's YAML front matter (read as text lines, never as YAML objects)."""
    try:
        with f.open("r", encoding="utf-8", errors="replace") as fh:
            lines = [fh.readline(4096) for _ in range(200)]
    except OSError:
        return {}
    if not lines or lines[0].strip() != "---":
        return {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return {"license": value.strip().strip("'\"")}
    return {}


def _gguf(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    # parsed: the header open_artifact read (vet_artifact); else read here (vet_path)
    info = parsed if isinstance(parsed, GGUFInfo) else read_gguf(f)
    findings: list[Finding] = []
    for key, value in info.metadata.items():
        if key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template."):
            if isinstance(value, str):
                findings += scan_template(value, rel, key)
    findings += scan_tokens(info.special_tokens, rel, "tokenizer.ggml.tokens")
    return gguf_card(info), findings


def gguf_card(info: GGUFInfo) -> dict[str, Any]:
    """Report metadata for a GGUF: header facts plus the model-card fields the catalog and BOM use."""
    meta = info.to_json()
    md = info.metadata
    arch = md.get("general.architecture")
    template = md.get("tokenizer.chat_template")
    ft = md.get("general.file_type")
    meta["card"] = {
        "name": md.get("general.name"),
        "architecture": arch,
        "organization": md.get("general.organization") or md.get("general.author"),
        "license": md.get("general.license"),
        "parameters": info.n_parameters,
        "quantization": FILE_TYPES.get(ft, str(ft)) if isinstance(ft, int) else None,
        "context_length": md.get(f"{arch}.context_length") if isinstance(arch, str) else None,
        "chat_template_sha256": _sha256_text(template) if isinstance(template, str) else None,
    }
    meta["metadata"] = {
        k: v
        for k, v in meta["metadata"].items()
        if k != "tokenizer.chat_template" and not isinstance(v, ArraySummary)
    }
    return meta


def _sha256_text(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _safetensors(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    info = parsed if isinstance(parsed, SafetensorsInfo) else read_safetensors(f)
    return info.to_json(), []


def _pickle(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    try:
        size = f.stat().st_size
        with f.open("rb") as fh:
            analysis = analyse_pickle(fh, size)
    except OSError as exc:
        raise UnusableInput(f"cannot read {f}: {exc.strerror or exc}", hint="Check permissions.") from exc
    return analysis.to_json(), pickle_findings(analysis, rel, strict)


def _zip(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    archive = read_torch_zip(f)
    return archive.to_json(), archive_findings(archive, rel, strict)


def _npy(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    try:
        size = f.stat().st_size
        with f.open("rb") as fh:
            header = read_npy_header(fh, str(f))
            meta = header.to_json()
            if not header.is_object:
                return meta, []
            # numpy.load(allow_pickle=True) unpickles everything after the header
            analysis = analyse_pickle(fh, size - header.data_offset)
    except OSError as exc:
        raise UnusableInput(f"cannot read {f}: {exc.strerror or exc}", hint="Check permissions.") from exc
    return {**meta, "pickle": analysis.to_json()}, pickle_findings(analysis, rel, strict)


def _config(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    config = hf_config_of(f, parsed) if isinstance(parsed, dict) else read_hf_config(f)
    return config.to_json(), []


def _tokenizer_config(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    tc = tokenizer_config_of(f, parsed) if isinstance(parsed, dict) else read_tokenizer_config(f)
    findings: list[Finding] = []
    for name, source in tc.chat_templates.items():
        findings += scan_template(source, rel, f"chat_template[{name}]")
    findings += scan_tokens(tc.special_tokens, rel, "special tokens")
    meta = tc.to_json()
    meta["chat_template_sha256"] = {k: _sha256_text(v) for k, v in tc.chat_templates.items()}
    return meta, findings


def _tokenizer(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    tokens = added_tokens_of(parsed) if isinstance(parsed, dict) else read_tokenizer_added_tokens(f)
    return {"format": "hf-tokenizer", "added_tokens": len(tokens)}, scan_tokens(tokens, rel, "added_tokens")


def _jinja(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    try:
        source = f.read_bytes()[: 4 << 20].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableInput(f"{f}: cannot read the template as UTF-8 ({exc})", hint="Fix the file.") from exc
    return {"format": "chat-template", "sha256": _sha256_text(source)}, scan_template(source, rel, "template")


def _python(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    # Read as text for the report only; never imported (trust_remote_code is how it would run).
    return {"format": "python"}, []


def _wrapped(
    f: Path, rel: str, strict: bool, parsed: Any = None
) -> tuple[dict[str, Any], list[Finding]]:
    return scan_wrapped_file(f, rel, strict)


_PARSERS: dict[str, Callable[[Path, str, bool, Any], tuple[dict[str, Any], list[Finding]]]] = {
    "npy": _npy,
    "gguf": _gguf,
    "safetensors": _safetensors,
    "pickle": _pickle,
    "zip": _zip,
    "hf-config": _config,
    "hf-tokenizer-config": _tokenizer_config,
    "hf-tokenizer": _tokenizer,
    "chat-template": _jinja,
    "python": _python,
    "compressed": _wrapped,
    "tar": _wrapped,
}


def _remote_code(root: Path, reports: list[FileReport], strict: bool) -> list[Finding]:
    """``auto_map`` entries and ``.py`` files: code a loader runs with trust_remote_code."""
    sev = Severity.FAIL if strict else Severity.WARN
    out: list[Finding] = []
    for r in reports:
        auto = r.metadata.get("auto_map") or {}
        if auto:
            modules = sorted({v.split("--")[-1].rsplit(".", 1)[0] + ".py" for v in auto.values()})
            out.append(
                Finding(
                    "REMOTE_CODE_AUTO_MAP",
                    sev,
                    r.path,
                    "auto_map",
                    f"auto_map makes loaders import custom code ({', '.join(modules)}) when "
                    f"trust_remote_code is set",
                )
            )
    py = [r.path for r in reports if r.format == "python"]
    if py:
        out.append(
            Finding(
                "REMOTE_CODE_FILES",
                sev,
                py[0],
                "",
                f"the folder ships Python files that a loader may run: {', '.join(py)}",
            )
        )
    return out


__all__ = ["gguf_card", "read_json", "vet_artifact", "vet_path"]
