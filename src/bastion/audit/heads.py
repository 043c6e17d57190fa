"""Signed tree heads: an Ed25519 signature over a small text checkpoint of the tree.

The signed bytes are exactly::

    bastion-audit-sth/v1
    <origin>
    <tree size>
    <root, base64>
    <timestamp, milliseconds since the Unix epoch>

(each line ended by ``\\n``). A third party rebuilds this text from a proof file and checks the
signature with the log's public key; nothing else is signed, so nothing else needs canonicalising.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.audit.keys import key_id
from bastion.errors import NotFound, UnusableInput

HEAD_FORMAT = "bastion-audit-sth/v1"
ORIGIN_PREFIX = "bastion-audit/"  # + the random log id fixed when the log is created


def checkpoint(origin: str, tree_size: int, root: bytes, timestamp_ms: int) -> bytes:
    """The exact bytes a tree head signature covers."""
    return (
        f"{HEAD_FORMAT}\n{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n{timestamp_ms}\n"
    ).encode()


@dataclass(frozen=True)
class SignedTreeHead:
    """A tree size and root, when it was signed, by which key, and the signature."""

    origin: str
    tree_size: int
    root: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, origin: str, tree_size: int, root: bytes, timestamp_ms: int
    ) -> SignedTreeHead:
        """Sign a checkpoint of the tree."""
        sig = key.sign(checkpoint(origin, tree_size, root, timestamp_ms))
        return cls(origin, tree_size, root, timestamp_ms, key_id(key.public_key()), sig)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True if the signature is valid for ``public_key``."""
        try:
            public_key.verify(
                self.signature, checkpoint(self.origin, self.tree_size, self.root, self.timestamp_ms)
            )
        except InvalidSignature:
            return False
        return True

    @property
    def time(self) -> str:
        """The signing time as RFC 3339 UTC."""
        dt = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def to_json(self) -> dict[str, Any]:
        """The head as plain data (root and signature base64, as in the checkpoint)."""
        return {
            "format": HEAD_FORMAT,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root": base64.b64encode(self.root).decode(),
            "timestamp_ms": self.timestamp_ms,
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SignedTreeHead:
        """Rebuild a head from :meth:`to_json` output (raises KeyError/ValueError/TypeError if malformed)."""
        return cls(
            origin=str(doc["origin"]),
            tree_size=int(doc["tree_size"]),
            root=base64.b64decode(doc["root"], validate=True),
            timestamp_ms=int(doc["timestamp_ms"]),
            key_id=str(doc["key_id"]),
            signature=base64.b64decode(doc["signature"], validate=True),
        )


def read_document(path: Path, what: str) -> Any:
    """Parse a JSON file a user handed us (a head, a proof); NotFound or UnusableInput naming it."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"{what} {path} does not exist") from exc
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UnusableInput(f"cannot read {path} as JSON: {exc}") from exc


def read_head(path: Path) -> SignedTreeHead:
    """Read a signed tree head kept outside the log.

    Accepts what Bastion writes: ``bastion audit sign --json`` (``{"head": {...}}``), a bare head, or an
    inclusion proof file (its ``head``). The signature is not checked here: callers check it with the
    public key they trust.
    """
    doc = read_document(path, "tree head file")
    if isinstance(doc, dict) and isinstance(doc.get("head"), dict):
        doc = doc["head"]
    try:
        if not isinstance(doc, dict) or doc.get("format", HEAD_FORMAT) != HEAD_FORMAT:
            raise ValueError(f"expected a {HEAD_FORMAT} document")
        return SignedTreeHead.from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise UnusableInput(
            f"{path} is not a signed tree head: {exc}",
            hint="Keep the output of 'bastion audit sign --json' (or a proof file) as the head.",
        ) from exc
