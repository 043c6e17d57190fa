"""The wheelhouse: Bastion and every dependency as wheels, pinned with hashes for ``--require-hashes``.

Built with pip itself (``pip wheel`` for Bastion, ``pip download`` for the rest) from the local caches
first: the compiled llama-cpp-python wheel (``~/.cache/bastion/wheels``), ``/opt/wheels`` and the
wheelhouse cache this module fills (``~/.cache/bastion/wheelhouse``). Only when those do not hold
everything, and the caller allows it, does pip ask the package index: that happens on the connected
side at create time, never at install time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from bastion.bundle.files import sha256_of
from bastion.errors import NotFound, UnusableInput

#: pip, setuptools and wheel travel too: pip installs the rest without ensurepip (Debian ships python3
#: without it), and the build backends let an operator rebuild Bastion from its source on the high side.
TOOLS = ("pip", "setuptools", "wheel")


def default_find_links() -> list[Path]:
    """The local wheel caches searched before any index: compiled wheels, /opt/wheels, the wheelhouse."""
    home = Path.home() / ".cache" / "bastion"
    return [p for p in (home / "wheels", Path("/opt/wheels"), wheelhouse_cache()) if p.is_dir()]


def wheelhouse_cache() -> Path:
    """Where downloaded wheels are kept so the next bundle is built without the network."""
    return Path.home() / ".cache" / "bastion" / "wheelhouse"


@dataclass(frozen=True)
class Wheel:
    """One wheel of the wheelhouse."""

    file: str
    name: str
    version: str
    sha256: str


def source_tree() -> Path | None:
    """The Bastion source tree this code runs from (an editable or PYTHONPATH checkout), if any."""
    import bastion

    root = Path(bastion.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "bastion").is_dir() else None


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise NotFound(
            f"{what} failed (pip exit {proc.returncode}):\n{tail}",
            hint="Put the missing wheels in ~/.cache/bastion/wheelhouse or allow the index "
            "(drop --offline) on this connected machine.",
        )


def build_wheelhouse(
    dest: Path,
    *,
    bastion_wheel: Path | None = None,
    extra: tuple[str, ...] = (),
    platform: tuple[str, ...] = (),
    offline: bool = False,
    find_links: list[Path] | None = None,
) -> list[Wheel]:
    """Fill ``dest`` with Bastion's wheel and the wheels of everything it needs (binary only)."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    tree = source_tree()
    if bastion_wheel is None:
        if tree is None:
            raise NotFound(
                "no Bastion source tree and no --bastion-wheel to put in the bundle",
                hint="Run from a Bastion checkout, or pass --bastion-wheel dist/bastion-*.whl.",
            )
        # No build isolation: the build backend (setuptools) is already here; nothing is fetched.
        # SOURCE_DATE_EPOCH fixes the zip timestamps: the same sources give the same wheel, so an
        # incremental bundle does not carry (nor the enclave reinstall) an unchanged Bastion.
        # Built from a clean copy: a build/ folder left in the tree could smuggle stale modules in.
        with tempfile.TemporaryDirectory(prefix="bastion-src-") as tmp:
            clean = Path(tmp) / "bastion"
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
            shutil.copytree(tree / "src", clean / "src", ignore=ignore)
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(tree / name, clean / name)
            _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(clean)],
                 f"building Bastion's wheel from {tree}", env={"SOURCE_DATE_EPOCH": "315532800"})
        bastion_wheel = next(dest.glob("bastion-*.whl"))
    elif bastion_wheel.parent.resolve() != dest.resolve():
        shutil.copy2(bastion_wheel, dest / bastion_wheel.name)
    links = default_find_links() if find_links is None else find_links
    args = ["download", "-q", "--dest", str(dest), "--only-binary=:all:"]
    for link in links:
        args += ["--find-links", str(link)]
    if tree is not None and (tree / "requirements.lock").is_file():
        args += ["-c", str(tree / "requirements.lock")]  # the versions the test suite ran against
    for plat in platform:
        args += ["--platform", plat]
    if platform:
        args += ["--python-version", f"{sys.version_info.major}{sys.version_info.minor}"]
    reqs = [str(dest / bastion_wheel.name), *TOOLS, *extra]
    try:
        _run(pip + args + ["--no-index"] + reqs, "resolving the wheelhouse from the local caches")
    except NotFound:
        if offline:
            raise
        _run(pip + args + reqs, "downloading the wheelhouse")
    wheels = wheels_in(dest)
    cache = wheelhouse_cache()
    cache.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        if w.name != "bastion" and not (cache / w.file).exists():
            shutil.copy2(dest / w.file, cache / w.file)
    return wheels


def wheels_in(folder: Path) -> list[Wheel]:
    """Every wheel in ``folder`` with its name, version and SHA-256; one wheel per project."""
    out: dict[str, Wheel] = {}
    for path in sorted(folder.glob("*.whl")):
        try:
            name, version, _, _ = parse_wheel_filename(path.name)
        except ValueError as exc:
            raise UnusableInput(f"{path} is not a wheel file name: {exc}", hint="Remove it.") from exc
        if name in out:
            raise UnusableInput(
                f"the wheelhouse holds two wheels of {name}: {out[name].file} and {path.name}",
                hint="Keep one version of each project.",
            )
        out[name] = Wheel(path.name, str(canonicalize_name(name)), str(version), sha256_of(path))
    return list(out.values())


def requirements_txt(wheels: list[Wheel]) -> str:
    """A requirements file pinning every wheel by version and hash (``pip install --require-hashes``)."""
    lines = ["# Every wheel of this bundle, pinned: pip install --no-index --require-hashes -r this file"]
    lines += [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in sorted(wheels, key=lambda w: w.name)]
    return "\n".join(lines) + "\n"
