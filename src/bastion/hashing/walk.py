"""List the files of a model (a single file or a folder) the way model_signing serialises them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bastion.errors import NotFound, UnusableInput
from bastion.hashing.manifest import printable

#: A folder with more entries than this is refused rather than walked forever (a hostile or wrong
#: PATH such as / must fail fast, not exhaust memory).
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class ModelFile:
    """One regular file of the model: its name in the manifest and where it is on disk."""

    name: str
    path: Path
    stat: os.stat_result


def normalise_ignores(paths: Iterable[str]) -> tuple[str, ...]:
    """Ignore paths as relative POSIX paths; absolute ones and ones that climb out with ``..`` are dropped.

    A signature may carry ignore paths; one that pointed outside the model folder could only be a
    mistake or an attempt to confuse the verifier, so it never matches anything.
    """
    out = []
    for p in paths:
        pp = PurePosixPath(str(p).replace("\\", "/"))
        if pp.is_absolute() or ".." in pp.parts or str(pp) in ("", "."):
            continue
        out.append(str(pp))
    return tuple(sorted(set(out)))


def _ignored(rel: PurePosixPath, ignores: tuple[PurePosixPath, ...]) -> bool:
    return any(rel == ig or rel.is_relative_to(ig) for ig in ignores)


def model_files(root: Path, ignore_paths: Iterable[str] = ()) -> list[ModelFile]:
    """Every regular file under ``root`` (or ``root`` itself, named ``"."``), not following symlinks.

    Symlinks are refused, not followed: a link can point outside the folder being approved, and the
    bytes the loader reads would then not be the bytes that were signed. Sockets, FIFOs and devices
    are refused because reading them can block or has no fixed content.
    """
    try:
        st = os.lstat(root)
    except FileNotFoundError as exc:
        raise NotFound(f"{printable(root)} does not exist", hint="Check the model path.") from exc
    except OSError as exc:
        raise UnusableInput(
            f"cannot read {printable(root)}: {exc.strerror}", hint="Check the permissions."
        ) from exc
    if stat.S_ISLNK(st.st_mode):
        raise UnusableInput(
            f"{printable(root)} is a symbolic link", hint="Pass the real path (for example with 'realpath')."
        )
    if stat.S_ISREG(st.st_mode):
        return [ModelFile(".", root, st)]
    if not stat.S_ISDIR(st.st_mode):
        raise UnusableInput(
            f"{printable(root)} is neither a file nor a folder", hint="Pass a model file or folder."
        )
    ignores = tuple(PurePosixPath(p) for p in normalise_ignores(ignore_paths))
    found: list[ModelFile] = []
    stack = [root]
    seen = 0
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise UnusableInput(
                f"cannot list {printable(folder)}: {exc.strerror}", hint="Check the permissions."
            ) from exc
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                raise UnusableInput(
                    f"{printable(root)} holds more than {MAX_ENTRIES:,} entries",
                    hint="Point at the model folder itself, not a parent folder.",
                )
            path = Path(entry.path)
            rel = PurePosixPath(path.relative_to(root).as_posix())
            if _ignored(rel, ignores):
                continue
            est = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(est.st_mode):
                raise UnusableInput(
                    f"{printable(path)} is a symbolic link; model folders must hold real files",
                    hint="Replace the link with the file it points to, or remove it.",
                )
            if stat.S_ISDIR(est.st_mode):
                stack.append(path)
            elif stat.S_ISREG(est.st_mode):
                found.append(ModelFile(str(rel), path, est))
            else:
                raise UnusableInput(
                    f"{printable(path)} is a special file (socket, FIFO or device)",
                    hint="Remove it from the model folder.",
                )
    found.sort(key=lambda f: PurePosixPath(f.name).parts)
    return found
