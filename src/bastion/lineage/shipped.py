"""Lineage references for the bundled models, computed at install time and shipped with every store.

``make venv`` runs ``scripts/build_lineage_references.py``, which fingerprints the bundled SmolLM2 and
Gemma 3 GGUFs once and writes one fingerprint file per catalog release plus a manifest (sha256 of each
file) under ``$BASTION_LINEAGE_REFS`` or ``~/.cache/bastion/lineage-references``, outside the source
tree like the evaluation data. :class:`~bastion.lineage.references.ReferenceStore` lists them beside
the organisation's own references, so a fresh home can test "fine-tuned from SmolLM2" without a
manual ``add-reference``. A file whose sha256 is not the manifest's is refused, not used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bastion import bundled
from bastion.errors import IntegrityError, UnusableInput
from bastion.lineage.fingerprint import Fingerprint, fingerprint
from bastion.signing.keys import write_atomic

FORMAT = 1
#: catalog release -> bundled model whose weights are its reference
BUNDLED_REFERENCES: dict[str, Callable[[], Path]] = {
    "SmolLM2-135M-Instruct": bundled.smollm2,
    "Gemma 3 270M": bundled.gemma3,
}


def reference_name(catalog_name: str) -> str:
    """The reference-store name of a catalog release (spaces become "-": "Gemma 3 270M" -> "Gemma-3-270M")."""
    return "-".join(catalog_name.split())


HINT = "Rebuild them with '.venv/bin/python scripts/build_lineage_references.py --force'."


def shipped_dir() -> Path:
    """Where shipped references live: ``$BASTION_LINEAGE_REFS`` or ``~/.cache/bastion/lineage-references``."""
    env = os.environ.get("BASTION_LINEAGE_REFS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bastion" / "lineage-references"


def build(out: Path, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fingerprint every bundled model into ``out`` (skipped when present unless ``force``)."""
    manifest_file = out / "manifest.json"
    if manifest_file.is_file() and not force:
        manifest: dict[str, Any] = orjson.loads(manifest_file.read_bytes())
        if manifest.get("format") == FORMAT and set(manifest.get("references", {})) == {
            reference_name(n) for n in BUNDLED_REFERENCES
        }:
            log(f"lineage references present: {out}")
            return manifest
    refs: dict[str, Any] = {}
    for release, locate in BUNDLED_REFERENCES.items():
        name = reference_name(release)
        fp = fingerprint(locate())
        data = orjson.dumps(fp.to_json())
        write_atomic(out / f"{name}.json", data)
        refs[name] = {
            "file": f"{name}.json",
            "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
            "release": release,
            "source": fp.source,
            "weights": fp.sha256,
            "family": fp.arch.family,
        }
        log(f"{name:24} {fp.arch.family:8} {fp.sha256[:23]}")
    manifest = {"format": FORMAT, "references": refs}
    write_atomic(manifest_file, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The shipped references' manifest entries by reference name (empty when none were built)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UnusableInput(f"{path} is not a readable manifest: {exc}", hint=HINT) from exc
    refs = doc.get("references") if isinstance(doc, dict) else None
    return refs if isinstance(refs, dict) else {}


def load(folder: Path, name: str, entry: dict[str, Any]) -> Fingerprint:
    """Shipped reference ``name``, checked against its manifest digest."""
    path = folder / str(entry.get("file", ""))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableInput(
            f"cannot read shipped reference {path}: {exc.strerror or exc}", hint=HINT
        ) from exc
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if digest != entry.get("sha256"):
        raise IntegrityError(
            f"{path} has {digest}, but the manifest records {entry.get('sha256')}", hint=HINT
        )
    return Fingerprint.from_json(orjson.loads(raw), f"shipped reference {name!r}")
