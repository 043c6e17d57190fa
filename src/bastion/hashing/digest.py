"""Streaming file digests with bounded memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bastion.errors import UnusableInput

CHUNK = 8 * 1024 * 1024


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Return ``"<algorithm>:<hex>"`` for the file at ``path``, read in 8 MiB chunks."""
    try:
        with path.open("rb") as fh:
            h = hashlib.file_digest(fh, algorithm)
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc
    return f"{algorithm}:{h.hexdigest()}"
