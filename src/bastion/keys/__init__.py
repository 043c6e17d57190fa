"""API keys for the gateway: created once, stored only as hashes, checked in constant time."""

from bastion.keys.store import ApiKey, KeyStore, NewKey, Principal

__all__ = ["ApiKey", "KeyStore", "NewKey", "Principal"]
