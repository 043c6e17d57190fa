"""``bastion bundle install``: verify, unpack, build the venv with no index, admit each model.

Layout under PREFIX (every step is staged, then renamed, so an interruption leaves the previous state):

    releases/<id>/         one complete release per manifest (<id>: first 16 hex of its SHA-256):
                           wheels, eval data, lineage references, catalog, venv, .complete (written last)
    venvs/<sha>/           the virtual environment of a requirements.txt (releases with the same wheels
                           share it), .complete written last
    current -> releases/<id>   switched atomically (symlink + rename) once the release is complete
    models/<name>@<digest>/    each model, content-addressed (stable across releases; admission
                           records its path), with its model-signing signature beside it
    data/                  BASTION_HOME: registry, audit log, admission key's public half, lineage.db
    keys/                  BASTION_KEY_HOME: the audit log's signing and body keys (mode 0600)
    bastion.toml, env.sh   generated configuration and environment for the installed Bastion

A release directory without ``.complete`` is an interrupted install; the next run removes it and
starts again. Models go through ``bastion admit`` of the installed Bastion (vet -> hash -> identify ->
Cedar -> sign -> record): one admission path, whichever machine made the bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.bundle import debian
from bastion.bundle.files import place, sha256_of
from bastion.bundle.offline_verify import Verified, unpack_into
from bastion.bundle.verify import read_trusted_key, verify_file
from bastion.errors import IntegrityError, UsageError
from bastion.signing import load_private_key, verify_model
from bastion.signing.keys import write_atomic

_COMPLETE = ".complete"


@dataclass
class ModelOutcome:
    """What happened to one model of the bundle."""

    name: str
    path: str
    admitted: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return dict(self.__dict__)


@dataclass
class Installed:
    """The result of an install: where, which release, and each model's fate."""

    prefix: Path
    release: str
    already_installed: bool
    manifest_sha256: str
    venv: Path
    config: Path
    models: list[ModelOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (``--json``)."""
        return {
            "prefix": str(self.prefix),
            "release": self.release,
            "already_installed": self.already_installed,
            "manifest_sha256": self.manifest_sha256,
            "venv": str(self.venv),
            "config": str(self.config),
            "env": str(self.prefix / "env.sh"),
            "models": [m.to_json() for m in self.models],
        }


def _installed_path(prefix: Path, release: Path, bundle_path: str, manifest: dict[str, Any]) -> Path:
    """Where a file of the bundle lives once installed (models content-addressed, the rest per release)."""
    parts = bundle_path.split("/")
    if parts[0] == "models":
        for m in manifest["models"]:
            tag = f"{m['name']}@{m['root_digest'].split(':')[-1][:16]}"
            if bundle_path == m["signature"]:
                return prefix / "models" / f"{tag}.sig"
            if parts[1] == m["name"]:
                return prefix / "models" / tag / "/".join(parts[2:])
    return release / bundle_path


def _carry_forward(prefix: Path, staging: Path, manifest: dict[str, Any], current: Path | None) -> None:
    """Hard-link the files an incremental bundle did not carry from the installed release, checked."""
    for f in manifest["files"]:
        if f.get("carried", True):
            continue
        if current is None:
            raise IntegrityError(
                f"this is an incremental bundle and nothing is installed under {prefix} to complete it "
                f"({f['path']} is not carried)",
                hint="Install the bundle it was made against (--since) first.",
            )
        src = _installed_path(prefix, current, f["path"], manifest)
        digest = sha256_of(src) if src.is_file() else ""
        if digest != f["sha256"]:
            raise IntegrityError(
                f"the incremental bundle needs {f['path']} from the installed release, and {src} "
                + ("is missing" if not digest else "differs from the signed digest"),
                hint="Install the bundle it was made against (--since) first, or a full bundle.",
            )
        place(src, staging / f["path"])


def _build_venv(prefix: Path, release: Path) -> Path:
    """The virtual environment from the wheelhouse alone: pip from the bundle, no index, every hash.

    Shared by every release with the same pinned requirements (``venvs/<sha>``, linked as the release's
    ``venv``): a bundle that only brings a new model does not rebuild it. A venv cannot be moved once
    made (its scripts name their own path), so it is built in place and marked complete last; one
    without the mark is an interrupted build and is made again.
    """
    digest = sha256_of(release / "requirements.txt")[:16]
    venv = prefix / "venvs" / digest
    if not (venv / _COMPLETE).exists():
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(exist_ok=True)
        # --without-pip: no ensurepip needed (Debian's python3 lacks it); pip comes from the bundle.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                       capture_output=True)
        pip_wheel = next((release / "wheels").glob("pip-*.whl"))
        proc = subprocess.run(
            [str(venv / "bin" / "python"), str(pip_wheel / "pip"), "install", "-q",
             "--disable-pip-version-check", "--no-index", "--require-hashes",
             "--find-links", str(release / "wheels"), "-r", str(release / "requirements.txt")],
            capture_output=True, text=True, check=False, env=_clean_env(PIP_NO_INDEX="1"),
        )
        if proc.returncode != 0:
            raise IntegrityError(
                f"installing the wheelhouse into {venv} failed: {proc.stderr.strip()[-800:]}",
                hint="The bundle's wheels do not fit this Python or platform; build it with --platform.",
            )
        write_atomic(venv / _COMPLETE, digest.encode() + b"\n")
    (release / "venv").symlink_to(Path("..") / ".." / "venvs" / digest)
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for the installed Bastion and its pip: none of the installer's Python paths."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    return {**env, **extra}


def _switch(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.relative_to(link.parent))
    os.replace(tmp, link)


def _install_release(prefix: Path, bundle: Path, public_pem: bytes, release_id: str) -> Verified:
    release = prefix / "releases" / release_id
    current = prefix / "current"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "releases").mkdir(exist_ok=True)
    if release.exists():  # left by an interrupted install: never trusted, rebuilt from the bundle
        shutil.rmtree(release)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=prefix))
    try:
        unpacked = staging / "b"
        os.mkdir(unpacked, 0o700)
        verified = verify_file(bundle, public_pem, unpack_into(str(unpacked)))
        manifest = verified.manifest
        debian.require(debian.parse((unpacked / debian.FILE).read_text(encoding="utf-8")))
        _carry_forward(prefix, unpacked, manifest,
                       current.resolve() if (current / _COMPLETE).exists() else None)
        public = load_public_key_bytes(public_pem)
        for m in manifest["models"]:
            sig = unpacked / m["signature"]
            verify_model(unpacked / m["path"], sig, public_key=public, use_cache=False)
        (unpacked / "MANIFEST.json").write_bytes(verified.manifest_bytes)
        # Models move to their content-addressed home; an existing one is the same bytes (same root).
        for m in manifest["models"]:
            tag = f"{m['name']}@{m['root_digest'].split(':')[-1][:16]}"
            home = prefix / "models" / tag
            home.parent.mkdir(exist_ok=True)
            if not home.exists():
                os.replace(unpacked / "models" / m["name"], home)
                os.replace(unpacked / m["signature"], prefix / "models" / f"{tag}.sig")
        shutil.rmtree(unpacked / "models", ignore_errors=True)
        os.replace(unpacked, release)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _build_venv(prefix, release)
    write_atomic(release / _COMPLETE, verified.manifest_sha256.encode() + b"\n")
    _switch(current, release)
    return verified


def load_public_key_bytes(pem: bytes) -> Any:
    """The trusted key as a cryptography object (already validated by ``read_trusted_key``)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(pem)


def _bastion(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the installed Bastion runs its own code, not the installer's
    env = _clean_env(**_env(prefix), HF_HUB_OFFLINE="1")
    return subprocess.run([str(prefix / "current" / "venv" / "bin" / "bastion"), *args, "--json"],
                          capture_output=True, text=True, env=env, check=False)


def _env(prefix: Path) -> dict[str, str]:
    return {
        "BASTION_HOME": str(prefix / "data"),
        "BASTION_KEY_HOME": str(prefix / "keys"),
        "BASTION_CONFIG": str(prefix / "bastion.toml"),
        "BASTION_EVAL_DATA": str(prefix / "current" / "eval-data"),
    }


def _error_of(proc: subprocess.CompletedProcess[str]) -> str:
    try:
        return str(json.loads(proc.stdout)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return (proc.stderr or proc.stdout).strip()[-500:]


def _write_config(prefix: Path, served: list[tuple[str, str, str]], public_key: Path | None) -> Path:
    data = prefix / "data"
    lines = [
        "# Generated by 'bastion bundle install' on every install: copy it elsewhere to edit it.",
        "[store]", f'path = "{data / "bastion.db"}"', "",
        # The audit keys stay at their default, $BASTION_KEY_HOME (PREFIX/keys, set by env.sh): outside
        # the data folder, so a writer of the database cannot read them.
        "[audit]", f'path = "{data / "audit" / "audit.db"}"', "",
    ]
    if public_key is not None:
        lines += ["[registry]", f'public_key = "{public_key}"', ""]
    for name, backend, path in served:
        lines += ["[[models]]", f'name = "{name}"', f'backend = "{backend}"', f'path = "{path}"', ""]
    config = prefix / "bastion.toml"
    write_atomic(config, "\n".join(lines).encode())
    env = "".join(f"export {k}='{v}'\n" for k, v in _env(prefix).items())
    path = f"export PATH='{prefix / 'current' / 'venv' / 'bin'}':\"$PATH\"\n"
    write_atomic(prefix / "env.sh", (env + path).encode())
    return config


def _admit_models(prefix: Path, manifest: dict[str, Any], key: Path | None, policy: str,
                  org: Path | None) -> tuple[list[ModelOutcome], Path | None]:
    outcomes: list[ModelOutcome] = []
    public: Path | None = None
    if key is not None:
        from cryptography.hazmat.primitives import serialization

        pub = load_private_key(key).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        public = prefix / "data" / "org" / "signing-key.pub.pem"
        write_atomic(public, pub)
    served: list[tuple[str, str, str]] = []
    _write_config(prefix, served, public)
    if key is not None and not (prefix / "data" / "audit" / "audit.db").exists():
        proc = _bastion(prefix, "audit", "init")
        if proc.returncode != 0:
            raise UsageError(f"'bastion audit init' failed under {prefix}: {_error_of(proc)}")
    for m in manifest["models"]:
        tag = f"{m['name']}@{m['root_digest'].split(':')[-1][:16]}"
        path = prefix / "models" / tag / m["path"].split("/", 2)[2]
        backend = "llama_cpp" if path.is_file() else "minilm"
        shown = _bastion(prefix, "models", "show", m["name"])
        if shown.returncode == 0:
            admitted = json.loads(shown.stdout)
            if admitted.get("root_digest") == m["root_digest"] and Path(admitted["path"]) == path.resolve():
                outcomes.append(ModelOutcome(m["name"], str(path), True, "already admitted"))
                served.append((m["name"], backend, str(path)))
                continue
            outcomes.append(ModelOutcome(m["name"], str(path), False,
                                         f"{m['name']!r} is already admitted from {admitted['path']}; "
                                         "revoke it first to admit this one"))
            continue
        if key is None:
            outcomes.append(ModelOutcome(m["name"], str(path), False,
                                         "not admitted: no --key to sign the admission"))
            continue
        args = ["admit", str(path), "--name", m["name"], "--key", str(key), "--policy", policy]
        if org is not None:
            args += ["--org", str(org)]
        proc = _bastion(prefix, *args)
        if proc.returncode == 0:
            outcomes.append(ModelOutcome(m["name"], str(path), True, f"admitted under {policy}"))
            served.append((m["name"], backend, str(path)))
        else:
            outcomes.append(ModelOutcome(m["name"], str(path), False, _error_of(proc)))
    _write_config(prefix, served, public)
    return outcomes, public


def install_bundle(
    bundle: Path,
    trust: Path,
    prefix: Path,
    *,
    key: Path | None = None,
    policy: str = "sovereign-strict",
    org: Path | None = None,
) -> Installed:
    """Verify ``bundle`` with the key at ``trust`` and install it under ``prefix`` (idempotent)."""
    public_pem = read_trusted_key(trust)
    prefix = prefix.expanduser().absolute()
    if key is not None:
        load_private_key(key)  # a wrong key is refused before anything is unpacked
    if org is not None and not org.is_file():
        raise UsageError(f"{org} does not exist", hint="Pass the organisation.toml with --org.")
    prefix.mkdir(parents=True, exist_ok=True)
    with _locked(prefix):
        return _install_locked(bundle, public_pem, prefix, key, policy, org)


@contextmanager
def _locked(prefix: Path) -> Iterator[None]:
    """One install at a time per prefix; leftovers of an interrupted one are removed under the lock."""
    import fcntl

    with (prefix / ".install.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise UsageError(f"another install into {prefix} is running",
                             hint="Wait for it to finish, then run this one again.") from exc
        for stale in prefix.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield


def _install_locked(bundle: Path, public_pem: bytes, prefix: Path, key: Path | None, policy: str,
                    org: Path | None) -> Installed:
    # Cheap read of the signed manifest to learn the release id (everything is verified below).
    first = verify_file(bundle, public_pem, manifest_only=True)
    release_id = first.manifest_sha256[:16]
    release = prefix / "releases" / release_id
    already = (release / _COMPLETE).exists()
    if already:
        verified = verify_file(bundle, public_pem)  # every byte, even when nothing is to be done
        _switch(prefix / "current", release)
    else:
        verified = _install_release(prefix, bundle, public_pem, release_id)
    data = prefix / "data"
    data.mkdir(exist_ok=True)
    refs = release / "lineage" / "lineage.db"
    if refs.exists() and not (data / "lineage.db").exists():
        shutil.copy2(refs, data / "lineage.db")
    outcomes, _ = _admit_models(prefix, verified.manifest, key, policy, org)
    return Installed(prefix, release_id, already, verified.manifest_sha256, release / "venv",
                     prefix / "bastion.toml", outcomes)
