"""Load the offline evaluation data sets, verifying each file against the build manifest."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bastion.errors import IntegrityError, NotFound, UnusableInput

BUILD_HINT = "Build the data once with 'make eval-data' (or: .venv/bin/python scripts/build_eval_data.py)."


def eval_data_dir() -> Path:
    """Where the built data lives: ``$BASTION_EVAL_DATA`` or ``~/.cache/bastion/eval-data``."""
    env = os.environ.get("BASTION_EVAL_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bastion" / "eval-data"


@dataclass(frozen=True)
class Dataset:
    """One verified data set: its records and the provenance a run records."""

    name: str
    sha256: str
    licence: str
    source: str
    split: str
    records: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        """Provenance only (records are not repeated in run metadata)."""
        return {"name": self.name, "sha256": self.sha256, "licence": self.licence, "source": self.source,
                "split": self.split, "items": len(self.records)}


def _manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not path.is_file():
        raise NotFound(f"evaluation data not found: {path} is missing", hint=BUILD_HINT)
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnusableInput(f"{path} is not a readable manifest: {exc}", hint=BUILD_HINT) from exc
    return manifest


@lru_cache(maxsize=32)
def _load(root: Path, name: str) -> Dataset:
    manifest = _manifest(root)
    entry = manifest.get("datasets", {}).get(name)
    if entry is None:
        raise NotFound(f"data set {name!r} is not in {root / 'manifest.json'}", hint=BUILD_HINT)
    path = root / entry["file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror or exc}", hint=BUILD_HINT) from exc
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    # Scores are only comparable if the items are the published ones: refuse a modified file.
    if digest != entry["sha256"]:
        raise IntegrityError(f"{path} has {digest}, but the manifest records {entry['sha256']}",
                             hint="The data file was modified; rebuild it with 'make eval-data'.")
    # split on "\n" only: str.splitlines() also splits inside JSON strings at U+2028, \x1c and the like
    records = tuple(json.loads(line) for line in raw.decode("utf-8").split("\n") if line)
    return Dataset(name=name, sha256=digest, licence=entry["licence"], source=entry["source"],
                   split=entry["split"], records=records)


def load_dataset(name: str, root: Path | None = None) -> Dataset:
    """Return data set ``name`` after checking its sha256 against the manifest."""
    return _load((root or eval_data_dir()).resolve(), name)
