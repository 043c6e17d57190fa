"""Hash a model into a :class:`Manifest`: in parallel, streaming, with bounded memory and a cache.

Work is split into units (a whole file, or one shard of a file) and handed to a thread pool.
Threads are enough: hashlib and file reads release the GIL, so two threads keep two cores busy.
Each thread reuses one fixed buffer, so memory is ``workers x CHUNK`` whatever the model size.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import UnusableInput, UsageError
from bastion.hashing.digest_cache import DigestCache, FileIdentity
from bastion.hashing.manifest import (
    GIT_PATHS,
    HASH_TYPES,
    Manifest,
    Resource,
    printable,
    sort_key,
)
from bastion.hashing.walk import ModelFile, model_files, normalise_ignores

CHUNK = 4 * 1024 * 1024
Progress = Callable[[int], None]


@dataclass(frozen=True)
class _Unit:
    file: ModelFile
    start: int
    end: int


def _new_hash(hash_type: str) -> hashlib._Hash | hashlib.blake2b:
    # blake2b with its default 64-byte digest: what model_signing's BLAKE2 engine produces.
    return hashlib.blake2b() if hash_type == "blake2b" else hashlib.sha256()


def _hash_range(unit: _Unit, hash_type: str, on_progress: Progress | None) -> str:
    h = _new_hash(hash_type)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    remaining = unit.end - unit.start
    try:
        # O_NOFOLLOW + fstat: the file opened must be the very file the walk saw. A file swapped for
        # a symlink (or another file) after the walk is refused instead of hashing foreign bytes.
        fd = os.open(unit.file.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb", buffering=0) as fh:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (unit.file.stat.st_dev, unit.file.stat.st_ino):
                raise UnusableInput(
                    f"{printable(unit.file.path)} was replaced while being hashed",
                    hint="Wait until nothing writes to the model, then hash it again.",
                )
            fh.seek(unit.start)
            while remaining > 0:
                n = fh.readinto(view[: min(CHUNK, remaining)])
                if not n:
                    raise UnusableInput(
                        f"{printable(unit.file.path)} became shorter while being hashed",
                        hint="Wait until the file is completely written, then hash it again.",
                    )
                h.update(view[:n])
                remaining -= n
                if on_progress is not None:
                    on_progress(n)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnusableInput(
                f"{printable(unit.file.path)} became a symbolic link while being hashed",
                hint="Hash it again.",
            ) from exc
        raise UnusableInput(
            f"cannot read {printable(unit.file.path)}: {exc.strerror or exc}", hint="Check the permissions."
        ) from exc
    return h.hexdigest()


def _units(files: list[ModelFile], shard_size: int | None) -> list[_Unit]:
    units = []
    for f in files:
        size = f.stat.st_size
        if shard_size is None:
            units.append(_Unit(f, 0, size))
        else:
            # model_signing's shard layout: [0, s), [s, 2s) ... the last shard ends at the file size;
            # an empty file has no shard at all.
            units.extend(_Unit(f, s, min(s + shard_size, size)) for s in range(0, size, shard_size))
    return units


def default_workers() -> int:
    """One thread per usable core (hashing is CPU-bound once the file is in the page cache)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def manifest_of(
    path: Path,
    *,
    hash_type: str = "sha256",
    shard_size: int | None = None,
    ignore_paths: Iterable[str] = (),
    ignore_git: bool = True,
    use_cache: bool = True,
    cache: DigestCache | None = None,
    workers: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> Manifest:
    """Hash the model file or folder at ``path`` into a :class:`Manifest`.

    Files under ``ignore_paths`` (relative to the folder) are left out, and so is git metadata
    (``.git``, ``.gitattributes`` ...) unless ``ignore_git=False``, as model_signing does.
    ``shard_size=None`` gives whole-file digests (method ``files``); an integer gives model_signing's
    ``shards`` method. ``on_total`` is called once with the bytes to read, ``on_progress`` with each
    increment (from worker threads). Raises UnusableInput if a file changes while it is hashed.
    """
    if hash_type not in HASH_TYPES:
        raise UsageError(
            f"unknown hash algorithm {hash_type!r}", hint=f"Use one of: {', '.join(HASH_TYPES)}."
        )
    if shard_size is not None and shard_size <= 0:
        raise UsageError(f"shard size must be positive, got {shard_size}", hint="Use for example 1000000000.")
    path = Path(path)
    ignores = normalise_ignores([*(GIT_PATHS if ignore_git else ()), *ignore_paths])
    files = model_files(path, ignores)
    return manifest_of_files(
        path, files, ignores, hash_type=hash_type, shard_size=shard_size, use_cache=use_cache,
        cache=cache, workers=workers, on_total=on_total, on_progress=on_progress,
    )


def manifest_of_files(
    path: Path,
    files: list[ModelFile],
    ignores: tuple[str, ...],
    *,
    hash_type: str = "sha256",
    shard_size: int | None = None,
    use_cache: bool = True,
    cache: DigestCache | None = None,
    workers: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> Manifest:
    """Hash ``files`` (from :func:`model_files` on ``path``) into a Manifest, as :func:`manifest_of` does.

    For callers that walked the model themselves (``formats.open_artifact`` parses the headers of the
    very files it hashes): every file is checked to be unchanged since that walk.
    """
    units = _units(files, shard_size)
    algorithm = hash_type if shard_size is None else f"{hash_type}-sharded-{shard_size}"

    own_cache = use_cache and cache is None
    db = (DigestCache() if own_cache else cache) if use_cache else None
    try:
        digests: dict[_Unit, str] = {}
        todo: list[_Unit] = []
        for u in units:
            ident = FileIdentity.of(u.file.stat)
            hit = db.get(u.file.path.absolute(), u.start, u.end, algorithm, ident) if db else None
            if hit is None:
                todo.append(u)
            else:
                digests[u] = hit
        if on_total is not None:
            on_total(sum(u.end - u.start for u in todo))
        todo.sort(key=lambda u: u.end - u.start, reverse=True)  # largest first balances the threads
        n = min(workers or default_workers(), max(1, len(todo)))
        if n == 1:
            for u in todo:
                digests[u] = _hash_range(u, hash_type, on_progress)
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="bastion-hash") as pool:
                futures = {u: pool.submit(_hash_range, u, hash_type, on_progress) for u in todo}
                try:
                    for u, fut in futures.items():
                        digests[u] = fut.result()
                except BaseException:
                    # First failure (or Ctrl-C) wins: do not read gigabytes more before reporting it.
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        _check_unchanged(files, {u.file.name for u in todo})
        if db is not None:
            db.put_many(
                [
                    (
                        u.file.path.absolute(),
                        u.start,
                        u.end,
                        algorithm,
                        FileIdentity.of(u.file.stat),
                        digests[u],
                    )
                    for u in todo
                ]
            )
    finally:
        if own_cache and db is not None:
            db.close()

    resources = tuple(
        sorted(
            (
                Resource(u.file.name, u.start, u.end, algorithm, digests[u], sharded=shard_size is not None)
                for u in units
            ),
            key=sort_key,
        )
    )
    model_name = path.name or path.resolve().name
    return Manifest(
        model_name=model_name,
        hash_type=hash_type,  # type: ignore[arg-type]  # checked against HASH_TYPES above
        method="files" if shard_size is None else "shards",
        resources=resources,
        shard_size=shard_size,
        ignore_paths=ignores,
    )


def _check_unchanged(files: list[ModelFile], hashed: set[str]) -> None:
    # A file rewritten while we read it would give a digest of neither version; refuse rather than
    # record (or cache) a digest that describes no real file.
    for f in files:
        if f.name not in hashed:
            continue
        try:
            now = FileIdentity.of(os.stat(f.path, follow_symlinks=False))
        except OSError as exc:
            raise UnusableInput(
                f"{printable(f.path)} vanished while being hashed", hint="Hash it again."
            ) from exc
        if now != FileIdentity.of(f.stat):
            raise UnusableInput(
                f"{printable(f.path)} changed while being hashed",
                hint="Wait until nothing writes to the model, then hash it again.",
            )
