"""Hash bytes already open as a file descriptor, in the manifest layout a signature asks for.

``manifest_of`` hashes files by path; this hashes exactly the bytes behind one descriptor (for the
gateway: a sealed in-memory copy of the weights, see :mod:`bastion.registry.sealed`), so what was
hashed and what is loaded cannot be two different files. No digest cache: a cache entry describes a
path, and these bytes have none.
"""

from __future__ import annotations

import os

from bastion.errors import UnusableInput, UsageError
from bastion.hashing.compute import CHUNK, _new_hash
from bastion.hashing.manifest import GIT_PATHS, HASH_TYPES, Manifest, Resource, sort_key


def _digest_range(fd: int, start: int, end: int, hash_type: str) -> str:
    h = _new_hash(hash_type)
    pos = start
    while pos < end:
        # pread: no shared file offset, so the descriptor can be hashed while others read it.
        data = os.pread(fd, min(CHUNK, end - pos), pos)
        if not data:
            raise UnusableInput(f"descriptor {fd} ended at byte {pos}, expected {end}", hint="Hash it again.")
        h.update(data)
        pos += len(data)
    return h.hexdigest()


def sha256_fd(fd: int, size: int) -> str:
    """``"sha256:<hex>"`` of the first ``size`` bytes behind ``fd`` (the digest the gateway reports)."""
    return "sha256:" + _digest_range(fd, 0, size, "sha256")


def manifest_of_descriptors(
    files: dict[str, tuple[int, int]],
    *,
    model_name: str,
    hash_type: str = "sha256",
    shard_size: int | None = None,
    ignore_paths: tuple[str, ...] = GIT_PATHS,
) -> Manifest:
    """The manifest of the files ``{name: (fd, size)}``, laid out as :func:`manifest_of` lays it out.

    ``name`` is the resource path (``"."`` for a single-file model). The result compares with a signed
    manifest through :func:`bastion.hashing.compare` like one computed from disk.
    """
    if hash_type not in HASH_TYPES:
        raise UsageError(
            f"unknown hash algorithm {hash_type!r}", hint=f"Use one of: {', '.join(HASH_TYPES)}."
        )
    if shard_size is not None and shard_size <= 0:
        raise UsageError(f"shard size must be positive, got {shard_size}", hint="Use for example 1000000000.")
    algorithm = hash_type if shard_size is None else f"{hash_type}-sharded-{shard_size}"
    resources = []
    for name, (fd, size) in files.items():
        if shard_size is None:
            ranges = [(0, size)]
        else:  # model_signing's layout: [0, s), [s, 2s) ...; an empty file has no shard
            ranges = [(s, min(s + shard_size, size)) for s in range(0, size, shard_size)]
        for start, end in ranges:
            digest = _digest_range(fd, start, end, hash_type)
            resources.append(Resource(name, start, end, algorithm, digest, sharded=shard_size is not None))
    return Manifest(
        model_name=model_name,
        hash_type=hash_type,  # type: ignore[arg-type]  # checked against HASH_TYPES above
        method="files" if shard_size is None else "shards",
        resources=tuple(sorted(resources, key=sort_key)),
        shard_size=shard_size,
        ignore_paths=ignore_paths,
    )
