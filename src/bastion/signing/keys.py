"""Signing keys: load EC keys from PEM, generate an organisation key pair, write it atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import NotFound, UnusableInput, UsageError

Curve = Literal["p256", "p384"]
#: The curves the model-signing format accepts (sigstore protobuf-specs' ECDSA key details).
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}
_GENERATE = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
MAX_KEY_FILE = 1 << 20  # a PEM key or certificate chain is kilobytes; refuse to read a huge file


def read_small(path: Path, what: str, limit: int = MAX_KEY_FILE) -> bytes:
    """Read a key, certificate or signature file, refusing anything larger than ``limit``."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError as exc:
        raise NotFound(f"{what} {path} does not exist", hint="Check the path.") from exc
    except OSError as exc:
        raise UnusableInput(
            f"cannot read {what} {path}: {exc.strerror}", hint="Check the permissions."
        ) from exc
    if len(data) > limit:
        raise UnusableInput(f"{what} {path} is larger than {limit >> 20} MiB", hint=f"Pass the right {what}.")
    return data


def check_curve(key: ec.EllipticCurvePublicKey, source: str) -> None:
    """Refuse curves the model-signing format does not define."""
    if key.curve.name not in CURVES:
        raise UnusableInput(
            f"{source} uses curve {key.curve.name}, which model signing does not support",
            hint="Use an ECDSA P-256 or P-384 key ('bastion signing-key generate').",
        )


def hash_for(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The ECDSA digest paired with the curve, as model_signing and sigstore pair them."""
    size = key.curve.key_size
    if size == 256:
        return hashes.SHA256()
    if size == 384:
        return hashes.SHA384()
    return hashes.SHA512()


def load_private_key(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load an ECDSA private key from a PEM file."""
    data = read_small(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise UnusableInput(
            f"{path} is encrypted and no passphrase was given", hint="Set the passphrase (--password-env)."
        ) from exc
    except ValueError as exc:
        raise UnusableInput(
            f"{path} is not a PEM private key (or the passphrase is wrong)",
            hint="Pass the private key written by 'bastion signing-key generate' or openssl.",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UnusableInput(
            f"{path} holds a {type(key).__name__}, not an ECDSA key",
            hint="Model signing uses ECDSA keys: 'bastion signing-key generate'.",
        )
    check_curve(key.public_key(), str(path))
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load an ECDSA public key (SubjectPublicKeyInfo PEM)."""
    data = read_small(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UnusableInput(
            f"{path} is not a PEM public key",
            hint="Pass the .pub.pem written by 'bastion signing-key generate'.",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UnusableInput(f"{path} is not an ECDSA public key", hint="Model signing uses ECDSA keys.")
    check_curve(key, str(path))
    return key


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """model_signing's key identifier: hex sha256 of the SubjectPublicKeyInfo PEM."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    The temp file is created with ``mode`` from the start (never world-readable, then chmod-ed), so
    a private key is never readable by others, not even for an instant.
    """
    if not overwrite and path.exists():
        raise UsageError(f"{path} already exists", hint="Choose another folder, or move the old file away.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", hint="Choose a writable path."
        ) from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and path.exists():
            raise UsageError(f"{path} already exists", hint="Choose another folder.")
        os.replace(tmp, path)
    except OSError as exc:  # e.g. the target is a directory, or the disk is full
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", hint="Choose a writable path."
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written."""

    private_key: Path
    public_key: Path
    curve: str
    key_hint: str

    def to_json(self) -> dict[str, Any]:
        """The key pair as a plain mapping."""
        return {
            "private_key": str(self.private_key),
            "public_key": str(self.public_key),
            "curve": self.curve,
            "key_hint": self.key_hint,
        }


def generate_key_pair(folder: Path, curve: Curve = "p256", name: str = "signing-key") -> KeyPair:
    """Generate an ECDSA key pair into ``folder``: ``NAME.pem`` (mode 0600) and ``NAME.pub.pem``.

    Refuses to overwrite an existing key: replacing an organisation key by accident would orphan
    every signature made with it.
    """
    if curve not in _GENERATE:
        raise UsageError(f"unknown curve {curve!r}", hint="Use p256 or p384.")
    priv = folder / f"{name}.pem"
    pub = folder / f"{name}.pub.pem"
    for p in (priv, pub):
        if p.exists():
            raise UsageError(f"{p} already exists", hint="Choose another folder; keys are never overwritten.")
    key = ec.generate_private_key(_GENERATE[curve]())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(priv, private_pem, 0o600, overwrite=False)
    write_atomic(pub, public_pem, 0o644, overwrite=False)
    return KeyPair(priv, pub, key.curve.name, key_hint(key.public_key()))
