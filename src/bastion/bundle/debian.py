"""The Debian packages the wheelhouse needs from the system, found from the wheels' own ELF files.

At create time every shared library inside every wheel is read for its ``NEEDED`` entries; a library
that no wheel ships itself (manylinux wheels vendor theirs, a locally compiled llama.cpp wheel does
not) must come from the system, and ``dpkg -S`` names the package that provides it here. Install
checks that each listed package is present (``dpkg-query``), or, on a system without dpkg, that the
library resolves (``ldconfig -p``), before anything is unpacked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import NotFound

FILE = "debian-packages.txt"
_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


@dataclass(frozen=True)
class DebianNeed:
    """A system package and the libraries the wheels need from it."""

    package: str
    version: str
    sonames: tuple[str, ...]


def _needed(elf: Path) -> set[str]:
    proc = subprocess.run(["readelf", "-d", str(elf)], capture_output=True, text=True, check=False)
    return set(_NEEDED.findall(proc.stdout))


def _ldconfig() -> dict[str, str]:
    proc = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False)
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*(\S+) \((?:libc6,)?x86-64[^)]*\) => (\S+)", line)
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def system_needs(wheels: list[Path]) -> list[DebianNeed]:
    """The Debian packages providing the libraries the wheels' ELF files need but do not ship."""
    if shutil.which("readelf") is None or shutil.which("dpkg") is None:
        return []
    shipped: set[str] = set()
    needed: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                for info in zf.infolist():
                    base = info.filename.rsplit("/", 1)[-1]
                    if ".so" not in base:
                        continue
                    shipped.add(base)
                    target = Path(tmp) / "lib.so"
                    target.write_bytes(zf.read(info))
                    needed |= _needed(target)
    paths = _ldconfig()
    by_package: dict[str, set[str]] = {}
    for soname in sorted(needed - shipped):
        path = paths.get(soname)
        if path is None:
            continue
        proc = subprocess.run(["dpkg", "-S", str(Path(path).resolve())], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:  # /lib vs /usr/lib (merged /usr): ask for the name dpkg recorded
            proc = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            package = proc.stdout.split(":", 1)[0].strip()
            by_package.setdefault(package, set()).add(soname)
    out = []
    for package, sonames in sorted(by_package.items()):
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                             check=False).stdout.strip()
        out.append(DebianNeed(package, ver, tuple(sorted(sonames))))
    return out


def render(needs: list[DebianNeed]) -> str:
    """``debian-packages.txt``: one package a line, the version it was built against and why."""
    lines = ["# Debian packages the wheels need from the system (checked by 'bastion bundle install')",
             "# package<TAB>version built against<TAB>libraries"]
    lines += [f"{n.package}\t{n.version}\t{' '.join(n.sonames)}" for n in needs]
    return "\n".join(lines) + "\n"


def parse(text: str) -> list[DebianNeed]:
    """Read ``debian-packages.txt`` back."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            package, version, libs = (line.split("\t") + ["", ""])[:3]
            out.append(DebianNeed(package, version, tuple(libs.split())))
    return out


def missing(needs: list[DebianNeed]) -> list[DebianNeed]:
    """The needs this system does not meet (dpkg-query where dpkg exists, else ldconfig)."""
    if shutil.which("dpkg-query"):
        def present(n: DebianNeed) -> bool:
            proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", n.package], capture_output=True,
                                  text=True, check=False)
            return proc.returncode == 0 and "ok installed" in proc.stdout
        return [n for n in needs if not present(n)]
    libs = _ldconfig()
    return [n for n in needs if any(s not in libs for s in n.sonames)]


def require(needs: list[DebianNeed]) -> None:
    """Raise NotFound naming every missing package and how to install it."""
    gone = missing(needs)
    if gone:
        names = " ".join(n.package for n in gone)
        raise NotFound(
            f"this system lacks Debian packages the bundle's wheels need: {names}",
            hint=f"Install them from your enclave's Debian mirror: apt-get install {names}",
        )
