"""The manifest of a model: every file (or file shard) paired with its digest.

The shape follows the OpenSSF model-signing v1.0 predicate so a manifest can be signed as is:

- ``method="files"``: one resource per file, named by its POSIX path relative to the model folder
  (``"."`` when the model is a single file), digest = the plain whole-file digest. This is the
  default and the digest ``sha256sum`` prints, so the gateway can report it as the weights digest.
- ``method="shards"``: each file is cut into ``shard_size`` pieces, one resource per piece named
  ``"path:start:end"``, algorithm ``"sha256-sharded-<shard_size>"``. A shard digest is *not* a digest
  of the whole file; it exists so one large file can be hashed by several cores at once. Empty files
  have no shards and so do not appear in a shard manifest (model_signing does the same).

The root digest is sha256 over the raw resource digests in canonical order, exactly as model_signing
computes the in-toto subject digest, so the same bytes give the same root digest in both tools.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

HashType = Literal["sha256", "blake2b"]
Method = Literal["files", "shards"]
HASH_TYPES: tuple[str, ...] = ("sha256", "blake2b")
#: model_signing's default shard size (PR #357); keeping it makes manifests comparable across tools.
DEFAULT_SHARD_SIZE = 1_000_000_000
#: paths model_signing ignores by default in every model folder
GIT_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")


def printable(name: object) -> str:
    """``name`` safe to show on a terminal: control and bidi characters become ``\\xNN``/``\\uNNNN``.

    File names come from the (untrusted) model folder. A name holding ANSI escapes, a carriage return
    or a right-to-left override could rewrite what an operator sees ("changed: evil.py" hidden).
    """
    out = []
    for ch in str(name):
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, order=True)
class Resource:
    """One hashed piece of the model: a whole file, or the byte range ``[start, end)`` of a file."""

    path: str
    start: int
    end: int
    algorithm: str
    digest: str
    sharded: bool = False

    @property
    def name(self) -> str:
        """The resource name as written in the signature (``path`` or ``path:start:end``)."""
        return f"{self.path}:{self.start}:{self.end}" if self.sharded else self.path

    @property
    def size(self) -> int:
        """Number of bytes this resource covers."""
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        """The resource as a plain mapping."""
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest, "size": self.size}


def sort_key(r: Resource) -> tuple[tuple[str, ...], int, int]:
    """Canonical order: by path components, then byte range (model_signing sorts PurePosixPath keys)."""
    return (PurePosixPath(r.path).parts, r.start, r.end)


@dataclass(frozen=True)
class Manifest:
    """Every resource of a model with its digest, plus how they were computed."""

    model_name: str
    hash_type: HashType
    method: Method
    resources: tuple[Resource, ...]
    shard_size: int | None = None
    ignore_paths: tuple[str, ...] = field(default=GIT_PATHS)

    @property
    def total_bytes(self) -> int:
        """Bytes covered by all resources."""
        return sum(r.size for r in self.resources)

    @property
    def files(self) -> tuple[str, ...]:
        """The distinct file paths in the manifest, in canonical order."""
        return tuple(dict.fromkeys(r.path for r in self.resources))

    def root_digest(self) -> str:
        """``sha256:<hex>`` over the raw resource digests in canonical order (the in-toto subject)."""
        h = hashlib.sha256()
        for r in self.resources:
            h.update(bytes.fromhex(r.digest))
        return f"sha256:{h.hexdigest()}"

    def digest_of(self, path: str) -> str:
        """``"<algorithm>:<hex>"`` of the whole file ``path`` (files method only: shards are not files)."""
        if self.method != "files":
            raise ValueError("a shard manifest has no whole-file digests; hash with method='files'")
        for r in self.resources:
            if r.path == path:
                return f"{r.algorithm}:{r.digest}"
        raise KeyError(path)

    def serialization(self) -> dict[str, Any]:
        """The model_signing ``predicate.serialization`` object that reproduces this manifest."""
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_type, "allow_symlinks": False}
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        if self.ignore_paths:
            out["ignore_paths"] = sorted(self.ignore_paths)
        return out

    def to_json(self) -> dict[str, Any]:
        """The manifest as a plain mapping (``bastion hash --json``)."""
        return {
            "model_name": self.model_name,
            "root_digest": self.root_digest(),
            "serialization": self.serialization(),
            "total_bytes": self.total_bytes,
            "resources": [r.to_json() for r in self.resources],
        }


@dataclass(frozen=True)
class ManifestDiff:
    """What differs between a signed manifest and the files on disk, by file."""

    extra: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.extra or self.missing or self.changed)

    def describe(self) -> str:
        """One line naming every offending file."""
        parts = []
        if self.changed:
            parts.append(f"changed: {', '.join(map(printable, self.changed))}")
        if self.extra:
            parts.append(f"not in the signature: {', '.join(map(printable, self.extra))}")
        if self.missing:
            parts.append(f"missing: {', '.join(map(printable, self.missing))}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The diff as a plain mapping."""
        return {"extra": list(self.extra), "missing": list(self.missing), "changed": list(self.changed)}


def compare(expected: Manifest, actual: Manifest) -> ManifestDiff:
    """Compare two manifests resource by resource (name, algorithm and digest); names files, not shards."""
    want = {r.name: r for r in expected.resources}
    have = {r.name: r for r in actual.resources}
    want_files = {r.path for r in expected.resources}
    have_files = {r.path for r in actual.resources}
    extra = have_files - want_files
    missing = want_files - have_files
    changed = {
        r.path
        for name, r in want.items()
        if r.path not in missing
        and (name not in have or (have[name].algorithm, have[name].digest) != (r.algorithm, r.digest))
    }
    # A file whose size changed in a shard manifest has shards on one side only: it is "changed".
    changed |= {r.path for name, r in have.items() if name not in want and r.path not in extra}
    return ManifestDiff(
        extra=tuple(sorted(extra)), missing=tuple(sorted(missing)), changed=tuple(sorted(changed))
    )
