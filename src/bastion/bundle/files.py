"""The two file operations create and install share: a file's SHA-256, and placing a file cheaply."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bastion.hashing import file_digest


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at ``path`` (the digest the bundle manifest records)."""
    return file_digest(path, "sha256").removeprefix("sha256:")


def place(src: Path, dest: Path) -> None:
    """Hard-link (or, across disks, copy) ``src`` to ``dest``: large models are not copied twice."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
