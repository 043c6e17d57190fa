"""Write a bundle as the canonical tar that ``offline_verify`` accepts, atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bastion.bundle.offline_verify import BLOCK, MANIFEST, SIGNATURE, canonical_header
from bastion.errors import UsageError

_TAR_RECORD = 20 * BLOCK


def write_archive(out: Path, manifest: bytes, signature: bytes, files: Iterable[tuple[str, Path]]) -> int:
    """Write manifest, signature, then ``files`` (name, source) to ``out``; return its size.

    Written to a temp file beside ``out`` and renamed, so a failed or interrupted create never leaves a
    bundle that looks whole.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # a bundle is public: its integrity comes from the signature
        with os.fdopen(fd, "wb") as fh:
            for name, data in ((MANIFEST, manifest), (SIGNATURE, signature)):
                fh.write(canonical_header(name, len(data)))
                fh.write(data + bytes(-len(data) % BLOCK))
            for name, src in files:
                size = src.stat().st_size
                fh.write(canonical_header(name, size))
                with src.open("rb") as s:
                    while chunk := s.read(1 << 20):
                        fh.write(chunk)
                fh.write(bytes(-size % BLOCK))
            fh.write(bytes(2 * BLOCK))  # end-of-archive marker
            fh.write(bytes(-fh.tell() % _TAR_RECORD))  # tar tools expect whole records
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(
            f"cannot write {out}: {exc.strerror or exc}", hint="Choose a writable path."
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size
