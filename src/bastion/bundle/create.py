"""``bastion bundle create``: gather, hash, sign and write a transfer bundle on the connected side.

    wheelhouse (pip) + models (each signed, model-signing format) + eval data + lineage references
        + catalog + Debian needs + SBOM + bootstrap -> manifest of every file -> detached signature
        -> canonical tar (temp file + rename)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from bastion import __version__, bundled
from bastion.bundle import bootstrap, debian, offline_verify, sbom
from bastion.bundle.archive import write_archive
from bastion.bundle.files import place, sha256_of
from bastion.bundle.offline_verify import FORMAT, check_name
from bastion.bundle.wheelhouse import build_wheelhouse, requirements_txt
from bastion.errors import UsageError
from bastion.signing import load_private_key, sign_model
from bastion.signing.keys import read_small, write_atomic

#: files every bundle carries whole, even an incremental one: the bootstrap must be able to run
ALWAYS_CARRIED = ("bootstrap.sh", "offline_verify.py", "requirements.txt", sbom.FILE, debian.FILE)


@dataclass(frozen=True)
class ModelSpec:
    """A model to carry: the name it will be admitted under and where it is now."""

    name: str
    source: Path

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=PATH``, ``bundled:NAME``, a bundled name, or a path (named after its stem)."""
        if "=" in text:
            name, _, ref = text.partition("=")
        elif text in bundled.BUNDLED or text.startswith("bundled:"):
            name, ref = text.removeprefix("bundled:"), f"bundled:{text.removeprefix('bundled:')}"
        else:
            name, ref = Path(text).stem, text
        path = bundled.resolve(ref)
        if not path.exists():
            raise UsageError(
                f"model {path} does not exist", hint="Pass a model file or folder, or bundled:NAME."
            )
        try:
            check_name(name)
        except offline_verify.BundleRefused as exc:
            raise UsageError(
                f"{name!r} cannot be a model name in a bundle", hint="Use letters, digits, . _ -"
            ) from exc
        return cls(name, path)


@dataclass(frozen=True)
class Created:
    """What ``create`` wrote."""

    path: Path
    manifest_path: Path
    manifest_sha256: str
    size: int
    files: int
    carried: int
    wheels: int
    models: tuple[str, ...]
    bootstrap: str

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (``--json``)."""
        return {
            "bundle": str(self.path),
            "manifest": str(self.manifest_path),
            "manifest_sha256": self.manifest_sha256,
            "bytes": self.size,
            "files": self.files,
            "carried": self.carried,
            "wheels": self.wheels,
            "models": list(self.models),
            "bootstrap": self.bootstrap,
        }


def _place_tree(src: Path, dest: Path) -> None:
    if src.is_file():
        place(src, dest / src.name)
        return
    for p in sorted(src.rglob("*")):
        if p.is_symlink():
            raise UsageError(f"{p} is a symbolic link", hint="Bundles carry regular files only; copy it in.")
        if p.is_file():
            place(p, dest / p.relative_to(src))


def _previous(since: Path | None) -> tuple[dict[str, str], str | None]:
    if since is None:
        return {}, None
    data = read_small(since, "previous manifest", offline_verify.MAX_MANIFEST)
    doc = offline_verify.parse_manifest(data)
    return {f["path"]: f["sha256"] for f in doc["files"]}, hashlib.sha256(data).hexdigest()


def create_bundle(
    output: Path,
    key: Path,
    models: list[ModelSpec],
    *,
    eval_data: Path | None = None,
    lineage_refs: Path | None = None,
    since: Path | None = None,
    platform: tuple[str, ...] = (),
    offline: bool = False,
    bastion_wheel: Path | None = None,
) -> Created:
    """Build the bundle at ``output``, its manifest at ``output`` + ``.manifest.json`` (for a later
    ``--since``) and its bootstrap script at ``output`` + ``.bootstrap.sh`` (to carry separately)."""
    private = load_private_key(key)
    private_pem = read_small(key, "private key")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise UsageError(f"two models share a name: {names}", hint="Name them NAME=PATH.")
    previous, previous_sha = _previous(since)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=output.parent) as tmp:
        root = Path(tmp)
        wheels = build_wheelhouse(root / "wheels", bastion_wheel=bastion_wheel, platform=platform,
                                  offline=offline)
        (root / "requirements.txt").write_text(requirements_txt(wheels), encoding="utf-8")
        model_docs: list[dict[str, Any]] = []
        for spec in models:
            dest = root / "models" / spec.name
            _place_tree(spec.source, dest)
            target = dest / spec.source.name if spec.source.is_file() else dest
            manifest, signature = sign_model(target, private)
            (root / "models" / f"{spec.name}.sig").write_bytes(signature)
            model_docs.append({
                "name": spec.name,
                "path": target.relative_to(root).as_posix(),
                "signature": f"models/{spec.name}.sig",
                "root_digest": manifest.root_digest(),
                "files": {p.relative_to(root).as_posix(): sha256_of(p)
                          for p in sorted(dest.rglob("*")) if p.is_file()},
            })
        if eval_data is not None:
            _place_tree(eval_data, root / "eval-data")
        if lineage_refs is not None:
            (root / "lineage").mkdir()
            # The SQLite backup API copies a consistent snapshot even if the store is in use.
            src, dst = sqlite3.connect(lineage_refs), sqlite3.connect(root / "lineage" / "lineage.db")
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        (root / "catalog").mkdir()
        (root / "catalog" / "catalog.toml").write_bytes(
            resources.files("bastion.catalog").joinpath("catalog.toml").read_bytes()
        )
        needs = debian.system_needs([root / "wheels" / w.file for w in wheels])
        (root / debian.FILE).write_text(debian.render(needs), encoding="utf-8")
        shutil.copyfile(offline_verify.__file__, root / "offline_verify.py")
        data_files = {p.relative_to(root).as_posix(): sha256_of(p)
                      for d in ("eval-data", "lineage", "catalog") if (root / d).is_dir()
                      for p in sorted((root / d).rglob("*")) if p.is_file()}
        sbom.write_sbom(sbom.build_sbom(wheels, model_docs, data_files, needs), root / sbom.FILE)
        pins = {"offline_verify.py": sha256_of(root / "offline_verify.py")}
        pins |= {f"wheels/{w.file}": w.sha256 for w in wheels if w.name in bootstrap.VERIFIER_WHEELS}
        script = bootstrap.bootstrap_script(pins)
        (root / bootstrap.FILE).write_text(script, encoding="utf-8")

        files: list[dict[str, Any]] = []
        carried: list[tuple[str, Path]] = []
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            check_name(rel)
            digest = sha256_of(p)
            carry = rel in ALWAYS_CARRIED or previous.get(rel) != digest
            files.append({"path": rel, "size": p.stat().st_size, "sha256": digest, "carried": carry})
            if carry:
                carried.append((rel, p))
        doc = {
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "bastion_version": __version__,
            "since": {"manifest_sha256": previous_sha} if previous_sha else None,
            "wheels": [{"file": w.file, "name": w.name, "version": w.version} for w in wheels],
            "models": [{k: v for k, v in m.items() if k != "files"} for m in model_docs],
            "eval_data": eval_data is not None,
            "lineage_refs": lineage_refs is not None,
            "files": files,
        }
        manifest_bytes = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        signature = offline_verify.sign_manifest(manifest_bytes, private_pem)
        offline_verify.check_signature(manifest_bytes, signature, private.public_key().public_bytes(
            *_spki()))  # sign, then prove it verifies before anything is written
        size = write_archive(output, manifest_bytes, signature, carried)
    manifest_path = output.with_name(output.name + ".manifest.json")
    write_atomic(manifest_path, manifest_bytes)
    write_atomic(output.with_name(output.name + ".bootstrap.sh"), script.encode())
    return Created(
        output, manifest_path, hashlib.sha256(manifest_bytes).hexdigest(), size, len(files), len(carried),
        len(wheels), tuple(names), script,
    )


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
