"""Content digests of model files: the one hashing routine every capability uses."""

from bastion.hashing.digest import file_digest

__all__ = ["file_digest"]
