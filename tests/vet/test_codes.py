"""Every finding code the scanners can emit is listed in bastion.vet.codes and documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

from bastion.vet.codes import CODES

ROOT = Path(__file__).resolve().parents[2]
PATTERN = re.compile(r'"((?:STRUCTURE|FILE|PICKLE|TEMPLATE|TOKEN|REMOTE)_[A-Z_]+)"')


def _emitted() -> set[str]:
    found: set[str] = set()
    for src in (ROOT / "src" / "bastion" / "vet").glob("*.py"):
        if src.name != "codes.py":
            found |= set(PATTERN.findall(src.read_text()))
    return found


def test_every_emitted_code_is_registered() -> None:
    emitted = _emitted()
    assert len(emitted) > 15
    assert emitted == set(CODES)


def test_every_code_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [c for c in CODES if f"`{c}`" not in readme] == []
