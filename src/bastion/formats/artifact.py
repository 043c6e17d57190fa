"""``open_artifact``: read a model file or folder once, and hand every later stage the parsed result.

One pass over the model: list its files as the manifest does (no symlinks, no special files, git
metadata left out), parse each file's header with the bounded reader for its format (GGUF header and
metadata, safetensors header, the folder's JSON files, a shard index, the model card's first bytes),
then hash every byte of every file into the manifest. Vet, identification, lineage and admission take
the resulting :class:`Artifact` instead of a path, so no stage re-reads the files with a reader of its
own, and what vet judged is what admission signs: the digests were computed from the files whose
headers were parsed, each checked unchanged (device, inode, size, mtime and ctime) from the walk to
the end of hashing, and :meth:`Artifact.check_unchanged` repeats that check at any later point.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput
from bastion.formats.containers import HEAD_BYTES
from bastion.formats.detect import detect_format
from bastion.formats.gguf import GGUFInfo, read_gguf
from bastion.formats.safetensors import INDEX_NAME, read_safetensors, shard_map
from bastion.formats.strict_json import read_json
from bastion.hashing import (
    GIT_PATHS,
    FileIdentity,
    Manifest,
    manifest_of_files,
    model_files,
    normalise_ignores,
    weights_digest,
)
from bastion.hashing.manifest import printable

#: bytes of README.md kept for identification (title, front matter); it is never rendered
MAX_CARD = 64 * 1024
WEIGHT_FORMATS = ("gguf", "safetensors", "zip", "pickle", "npy")

_READERS: dict[str, Callable[[Path], Any]] = {
    # keep_arrays: lineage needs the vocabulary and merges, and they are decoded here once
    "gguf": lambda p: read_gguf(p, keep_arrays=True),
    "safetensors": read_safetensors,
    "hf-config": read_json,
    "hf-tokenizer-config": read_json,
    "hf-tokenizer": read_json,
    "shard-index": read_json,
}


@dataclass(frozen=True)
class ArtifactFile:
    """One file of the artifact: its manifest name, format, digest and parsed header (or why not)."""

    name: str  # POSIX path relative to the folder; "." for a single-file artifact
    path: Path
    stat: os.stat_result
    head: bytes  # the first HEAD_BYTES bytes (magic, and what content sniffing needs)
    format: str | None  # detect_format's answer ("empty" for an empty file, None if unknown)
    digest: str  # "sha256:<hex>" of the whole file, from the manifest
    parsed: Any = None  # GGUFInfo, SafetensorsInfo or a JSON object, for the formats read here
    error: UnusableInput | None = None  # the reader's refusal: vet reports it, other stages raise it

    @property
    def size(self) -> int:
        """Bytes in the file."""
        return self.stat.st_size

    def require(self) -> Any:
        """The parsed header; the reader's error if it could not be parsed."""
        if self.error is not None:
            raise self.error
        return self.parsed


@dataclass(frozen=True)
class Artifact:
    """A model file or folder, read once: files with parsed headers, the manifest, the model card."""

    path: Path
    files: tuple[ArtifactFile, ...]
    manifest: Manifest
    card: str = ""

    @property
    def is_folder(self) -> bool:
        """A model folder (else a single file)."""
        return not (len(self.files) == 1 and self.files[0].name == ".")

    def get(self, name: str) -> ArtifactFile | None:
        """The file named ``name`` (relative POSIX path), if the artifact has it."""
        return next((f for f in self.files if f.name == name), None)

    def json(self, name: str) -> dict[str, Any] | None:
        """The parsed JSON object of file ``name``; None when absent; its parse error when unreadable."""
        f = self.get(name)
        if f is None or not isinstance(f.require(), dict):
            return None
        data: dict[str, Any] = f.parsed
        return data

    @property
    def gguf(self) -> GGUFInfo | None:
        """The parsed header of a single-file GGUF artifact."""
        if self.is_folder or self.files[0].format != "gguf":
            return None
        info: GGUFInfo = self.files[0].require()
        return info

    def weight_files(self) -> tuple[ArtifactFile, ...]:
        """The files holding the weights: the file itself, ``model.safetensors`` or the index's shards."""
        if not self.is_folder:
            return self.files
        index = self.get(INDEX_NAME)
        if self.get("model.safetensors") is None and index is not None:
            names = sorted(set(shard_map(index.require(), index.path).values()))
            missing = [n for n in names if self.get(n) is None]
            if missing:
                raise UnusableInput(
                    f"{self.path}: the shard index names {', '.join(map(printable, missing))}, "
                    "which the folder does not hold",
                    hint="Copy every shard of the checkpoint into the folder.",
                )
            return tuple(f for f in self.files if f.name in names)
        top = [f for f in self.files if "/" not in f.name and f.format in WEIGHT_FORMATS]
        preferred = [f for f in top if f.name == "model.safetensors"] or [
            f for f in top if f.format == "safetensors"
        ]
        return tuple(preferred or top)

    def weights_digest(self) -> str:
        """The digest the model's weights are known by (see ``hashing.weights_digest``)."""
        weights = self.weight_files()
        if not weights:
            raise UnusableInput(
                f"{self.path} has no weights file (GGUF, safetensors or PyTorch)",
                hint="Point at the model file or the folder that holds its weights.",
            )
        return weights_digest([(f.path.name, f.digest) for f in weights])

    def check_unchanged(self) -> None:
        """Raise UnusableInput if any file changed, vanished or appeared since the artifact was read."""
        now = model_files(self.path, normalise_ignores(GIT_PATHS))
        names = {f.name for f in now}
        was = {f.name: f for f in self.files}
        added = sorted(names - set(was))
        gone = sorted(set(was) - names)
        changed = sorted(
            f.name
            for f in now
            if f.name in was and FileIdentity.of(f.stat) != FileIdentity.of(was[f.name].stat)
        )
        if added or gone or changed:
            what = "; ".join(
                f"{label}: {', '.join(map(printable, items))}"
                for label, items in (("changed", changed), ("added", added), ("removed", gone))
                if items
            )
            raise UnusableInput(
                f"{self.path} changed after it was read and hashed ({what})",
                hint="Wait until nothing writes to the model, then run the command again.",
            )


def _format(f: Path, name: str, head: bytes, size: int) -> str | None:
    if size == 0:
        return "empty"
    if name == INDEX_NAME:
        return "shard-index"
    return detect_format(f, head, size)


def _card(f: Path) -> str:
    try:
        with f.open("rb") as fh:
            return fh.read(MAX_CARD).decode("utf-8", "replace")
    except OSError:
        return ""


def open_artifact(
    path: Path,
    *,
    use_cache: bool = True,
    workers: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Artifact:
    """Read the model file or folder at ``path`` once: headers parsed, every file hashed (sha256).

    A file whose header does not parse is kept with its error (vet reports it as a structural
    failure); a path that is missing, a symlink or a special file raises UnusableInput/NotFound.
    ``use_cache`` takes digests of unchanged files from the digest cache, as ``manifest_of`` does.
    """
    path = Path(path)
    ignores = normalise_ignores(GIT_PATHS)
    walked = model_files(path, ignores)
    parsed: list[tuple[bytes, str | None, Any, UnusableInput | None]] = []
    card = ""
    for mf in walked:
        try:
            with mf.path.open("rb") as fh:
                head = fh.read(HEAD_BYTES)
        except OSError as exc:
            raise UnusableInput(
                f"cannot read {printable(mf.path)}: {exc.strerror or exc}", hint="Check the permissions."
            ) from exc
        fmt = _format(mf.path, mf.name, head, mf.stat.st_size)
        value: Any = None
        error: UnusableInput | None = None
        if fmt in _READERS:
            try:
                value = _READERS[fmt](mf.path)
            except UnusableInput as exc:
                error = exc
        if mf.name.lower() == "readme.md":
            card = _card(mf.path)
        parsed.append((head, fmt, value, error))
    manifest = manifest_of_files(
        path, walked, ignores, use_cache=use_cache, workers=workers, on_total=on_total,
        on_progress=on_progress,
    )
    files = tuple(
        ArtifactFile(mf.name, mf.path, mf.stat, head, fmt, manifest.digest_of(mf.name), value, error)
        for mf, (head, fmt, value, error) in zip(walked, parsed, strict=True)
    )
    artifact = Artifact(path, files, manifest, card)
    # A cached digest skips hashing, so the per-file check of hashing did not run for it: check here
    # that every file is still the one whose header was parsed.
    artifact.check_unchanged()
    return artifact
