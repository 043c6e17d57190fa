"""Sealed weights: the bytes the gateway hashes are the bytes its loader reads, and they cannot change.

Why (issue 10, findings 4 and 5). llama.cpp memory-maps a GGUF *by path*. Verifying a path and then
loading it leaves two gaps: the file can be swapped (rename) between the check and the load, and it
can be written in place (``dd conv=notrunc``) while it is served, which changes the answers of the
running model under the digest that was admitted. Opening once and loading ``/proc/self/fd/N`` closes
the first gap only. ``use_mmap=False`` does copy the weights into private memory (checked with
llama-cpp-python 0.3.36: after a ``dd`` of 90 MB into SmolLM2 the loaded model kept answering
" Paris.", while the memory-mapped one answered ""), but the file is still read twice, once to hash
and once to load, so a write between the two reaches the loaded model.

What we do instead, on Linux:

1. open each model file once (``O_NOFOLLOW``, a regular file),
2. copy it into an anonymous ``memfd`` (kernel-side ``sendfile``), then
3. seal the memfd with ``F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL``: from here on no
   process, ours included, can change a byte of it (the kernel refuses writes and writable mappings),
4. hash the sealed bytes (``bastion.hashing.descriptor``) and compare them with the signed manifest
   (:func:`bastion.registry.verify.open_admitted`), and
5. hand the loader ``/proc/self/fd/N`` (a folder model gets a private 0700 folder of links to its
   sealed files). llama.cpp maps the sealed memfd; what it maps is what was hashed.

Writing the file on disk afterwards changes nothing that answers; the next start hashes the new bytes
and refuses them. The cost is memory: the weights live in RAM (shared memory, swappable) instead of the
page cache, the same as ``use_mmap=False``, with no second copy because llama.cpp maps the memfd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bastion.errors import BastionError, ConfigError, NotFound, UnusableInput
from bastion.hashing.manifest import GIT_PATHS, printable
from bastion.hashing.walk import model_files, normalise_ignores

#: Called with the name of each stage ("opened", "sealed", "verified"): a seam for tests that act at
#: an exact moment (swap or overwrite the file) without monkeypatching, and for progress logging.
Observer = Callable[[str], None]

_COPY = 1 << 30  # sendfile moves at most ~2 GiB per call; ask for 1 GiB at a time


@dataclass
class SealedModel:
    """Immutable in-memory copies of a model's files, and the path a loader should open."""

    source: Path
    #: manifest name (``"."`` for a single-file model) -> (sealed memfd, size)
    files: dict[str, tuple[int, int]]
    #: ``/proc/self/fd/N`` for a single file, or a private folder of links for a folder model
    load_path: Path
    _folder: Path | None = field(default=None, repr=False)

    def close(self) -> None:
        """Release the copies (a loader that mapped them keeps its mapping). Safe to call twice."""
        for fd, _ in self.files.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.files = {}
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _open_source(path: Path) -> tuple[int, int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"{printable(path)} does not exist", hint="Check the model path.") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnusableInput(
                f"{printable(path)} is a symbolic link; model files are read only as regular files",
                hint="Point the configuration at the file itself.",
            ) from exc
        raise UnusableInput(
            f"cannot read {printable(path)}: {exc.strerror}", hint="Check the permissions."
        ) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnusableInput(f"{printable(path)} is not a regular file", hint="Point at the model file.")
    return fd, st.st_size


def _seals() -> int:
    try:
        return fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    except AttributeError:  # not Linux: no memfd seals, and no honest way to serve
        raise ConfigError(
            "serving a local model needs Linux (sealed memfd copies of the weights)",
            hint="Run the gateway on Linux, or serve the model through an upstream (backend = \"openai\").",
        ) from None


def _sealed_copy(src: int, size: int, label: str) -> int:
    """A sealed memfd holding the ``size`` bytes of ``src``; UnusableInput if the source is shorter."""
    seals = _seals()
    memfd = os.memfd_create(f"bastion:{label}"[:240], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(memfd, size)  # one allocation; GROW is sealed next, so the size is final
        done = 0
        while done < size:
            sent = os.sendfile(memfd, src, done, min(_COPY, size - done))
            if sent == 0:
                raise UnusableInput(
                    f"{label} became shorter while it was being read", hint="Wait until nothing writes it."
                )
            done += sent
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(memfd)
        raise
    return memfd


def seal(path: Path, names: Sequence[str] | None = None, observe: Observer | None = None) -> SealedModel:
    """Copy the model at ``path`` into sealed memory: a file as ``"."``, a folder as ``names``.

    ``names`` are manifest paths relative to the folder (what a signature lists); without them, every
    file of the folder as :func:`bastion.hashing.manifest_of` would list it (git metadata left out).
    """
    path = Path(path)
    single = path.is_file()
    if single:
        wanted = ["."]
    elif names is None:
        wanted = [f.name for f in model_files(path, normalise_ignores(GIT_PATHS))]
    else:
        wanted = list(names)
    sources: dict[str, tuple[int, int]] = {}
    files: dict[str, tuple[int, int]] = {}
    folder: Path | None = None
    try:
        for name in wanted:
            rel = PurePosixPath(name)
            if not single and (rel.is_absolute() or ".." in rel.parts or name in ("", ".")):
                raise UnusableInput(
                    f"{printable(name)} is not a file inside {printable(path)}", hint="Admit it again."
                )
            sources[name] = _open_source(path if single else path / name)
        if observe is not None:
            observe("opened")
        for name, (src, size) in sources.items():
            files[name] = (_sealed_copy(src, size, f"{path.name}/{name}"), size)
        if single:
            load_path = Path(f"/proc/self/fd/{files['.'][0]}")
        else:
            # Links resolve in the reading process, i.e. to our own sealed descriptors. The folder is
            # 0700 (mkdtemp), so nobody but this user can add or swap a link in it.
            folder = Path(tempfile.mkdtemp(prefix="bastion-sealed-"))
            for name, (fd, _) in files.items():
                link = folder / name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f"/proc/self/fd/{fd}")
            load_path = folder
    except BaseException as exc:
        for fd, _ in files.values():
            os.close(fd)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, BastionError):
            raise UnusableInput(
                f"cannot copy {printable(path)} into sealed memory: {exc.strerror or exc}",
                hint="Check free memory; the gateway keeps the weights it serves in RAM.",
            ) from exc
        raise
    finally:
        for src, _ in sources.values():
            os.close(src)
    sealed = SealedModel(path, files, load_path, folder)
    if observe is not None:
        observe("sealed")
    return sealed
