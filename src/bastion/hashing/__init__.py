"""Content digests of model files: the one hashing routine every capability uses.

``file_digest`` gives one file's plain digest; ``manifest_of`` gives a whole model's manifest (every
file, or every shard, with its digest), hashed in parallel with a digest cache.
"""

from bastion.hashing.compute import manifest_of, manifest_of_files
from bastion.hashing.digest import file_digest, weights_digest
from bastion.hashing.digest_cache import DigestCache, FileIdentity
from bastion.hashing.manifest import (
    DEFAULT_SHARD_SIZE,
    GIT_PATHS,
    HASH_TYPES,
    Manifest,
    ManifestDiff,
    Resource,
    compare,
)
from bastion.hashing.walk import ModelFile, model_files, normalise_ignores

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "GIT_PATHS",
    "HASH_TYPES",
    "DigestCache",
    "FileIdentity",
    "ModelFile",
    "Manifest",
    "ManifestDiff",
    "Resource",
    "compare",
    "file_digest",
    "manifest_of",
    "manifest_of_files",
    "model_files",
    "normalise_ignores",
    "weights_digest",
]
