"""Streaming file digests with bounded memory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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


def weights_digest(weight_files: Sequence[tuple[str, str]]) -> str:
    """The digest a model's weights are known by, from ``(file name, "sha256:<hex>")`` pairs.

    One weights file (a GGUF, a ``model.safetensors``): its own digest, what ``sha256sum`` prints.
    Several (a sharded checkpoint): ``sha256-folder:`` over ``name:digest`` lines in name order, so a
    folder model is known by one digest that changes when any shard does.
    """
    if len(weight_files) == 1:
        return weight_files[0][1]
    lines = [f"{name}:{digest}\n" for name, digest in sorted(weight_files)]
    return "sha256-folder:" + hashlib.sha256("".join(lines).encode()).hexdigest()
