"""Content digests of model files: the one hashing routine every capability uses.

``file_digest`` gives one file's plain digest; ``manifest_of`` gives a whole model's manifest (every
file, or every shard, with its digest), hashed in parallel with a digest cache.
"""

from bastion.hashing.compute import manifest_of
from bastion.hashing.digest import file_digest
from bastion.hashing.digest_cache import DigestCache
from bastion.hashing.manifest import (
    DEFAULT_SHARD_SIZE,
    GIT_PATHS,
    HASH_TYPES,
    Manifest,
    ManifestDiff,
    Resource,
    compare,
)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "GIT_PATHS",
    "HASH_TYPES",
    "DigestCache",
    "Manifest",
    "ManifestDiff",
    "Resource",
    "compare",
    "file_digest",
    "manifest_of",
]
