"""The two operator-held keys of the audit log, both kept outside the database.

* The Ed25519 signing key signs tree heads. Its public half (``<key>.pub``) is what auditors pin: a
  verifier given the real public key rejects heads re-signed by anybody else.
* The 256-bit body key encrypts stored bodies with AES-GCM (``store_bodies = "full"``). Each body is
  bound to its entry and part through the associated data, so ciphertexts cannot be moved between
  entries without failing authentication.

Both are secrets: they are refused (:class:`ConfigError`, naming the file and the ``chmod 600`` fix)
when their mode lets the group or others read them. By default they live in ``$BASTION_KEY_HOME``,
outside ``$BASTION_HOME``, so that write access to the database does not come with the signing key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import ConfigError, IntegrityError, UsageError

_INIT_HINT = "Run 'bastion audit init' to create the keys, or set audit.signing_key in the configuration."


def public_key_path(signing_key: Path) -> Path:
    """Where the public half of ``signing_key`` is written (``<key>.pub``)."""
    return signing_key.with_name(signing_key.name + ".pub")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class KeyFiles:
    """The files written by :func:`create_keys`."""

    signing_key: Path
    public_key: Path
    body_key: Path
    key_id: str

    def to_json(self) -> dict[str, Any]:
        """The paths and key id as plain data."""
        return {
            "signing_key": str(self.signing_key),
            "public_key": str(self.public_key),
            "body_key": str(self.body_key),
            "key_id": self.key_id,
        }


def existing_keys(signing_key: Path, body_key: Path) -> KeyFiles | None:
    """The complete key set already at these paths (checked like every use of them), or None if absent.

    Several logs (a staging and a production home, a log started again) may share one operator key
    set; a partial set is an error, not something to complete.
    """
    paths = (signing_key, public_key_path(signing_key), body_key)
    present = [p.exists() for p in paths]
    if not any(present):
        return None
    if not all(present):
        missing = ", ".join(str(p) for p, here in zip(paths, present, strict=True) if not here)
        raise UsageError(
            f"the audit key set is incomplete: {missing} is missing",
            hint="Restore the missing file from your backup, or move the others away to make a new set.",
        )
    signer = load_signing_key(signing_key)  # refuses a key others can read, naming the fix
    BodyCipher.from_file(body_key)
    return KeyFiles(signing_key, paths[1], body_key, key_id(signer.public_key()))


def create_keys(signing_key: Path, body_key: Path) -> KeyFiles:
    """Create a new Ed25519 signing key (+ ``.pub``) and a body key; refuse to overwrite either."""
    pub_path = public_key_path(signing_key)
    for path in (signing_key, pub_path, body_key):
        if path.exists():
            raise UsageError(
                f"{path} already exists; refusing to replace an audit key",
                hint="A new signing key would orphan every signed tree head. Move the old file away "
                "first if you really mean to rotate it.",
            )
    priv = Ed25519PrivateKey.generate()
    pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    written: list[Path] = []
    try:  # all three files or none: a half-made key set would block the next 'init'
        for path, data, mode in (
            (signing_key, pem, 0o600),
            (body_key, os.urandom(32).hex().encode() + b"\n", 0o600),
            (pub_path, pub_pem, 0o644),
        ):
            _write_secret(path, data, mode)
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write audit key {path}: {exc.strerror or exc}",
            hint="Check that the directory is writable, or set audit.signing_key / audit.body_key.",
        ) from exc
    return KeyFiles(signing_key, pub_path, body_key, key_id(priv.public_key()))


def _write_secret(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a new file created with ``mode`` (never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the Ed25519 private key at ``path`` (PEM, PKCS#8); refused unless only its owner can read it."""
    data = _read_secret(path, "audit signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a PEM private key: {exc}", hint=_INIT_HINT) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", hint=_INIT_HINT)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM SubjectPublicKeyInfo) from ``path``."""
    data = _read(path, "audit public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{path} is not a PEM public key: {exc}",
            hint="Pass the '.pub' file written by 'bastion audit init'.",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key", hint="Pass the audit log's '.pub' file.")
    return key


def _read_secret(path: Path, what: str) -> bytes:
    """Read a secret key file, refusing one the group or others may read (or write)."""
    try:
        with path.open("rb") as fh:
            # Check the mode of the very file we read (fstat), not of whatever the path names later.
            mode = os.fstat(fh.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise ConfigError(
                    f"{what} {path} is accessible to group or others (mode {mode:04o});"
                    " refusing to use a key others can read",
                    hint=f"Run 'chmod 600 {path}' (and keep it outside BASTION_HOME, readable only by the"
                    " account that runs Bastion); if others could read it, rotate it.",
                )
            return fh.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist", hint=_INIT_HINT) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}", hint="Check the file's permissions.") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist", hint=_INIT_HINT) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}", hint="Check the file's permissions.") from exc


class BodyCipher:
    """AES-256-GCM for stored bodies, with the entry index and part bound in as associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("body key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> BodyCipher:
        """Load the hex-encoded 256-bit key written by ``bastion audit init``."""
        text = _read_secret(path, "audit body key").strip()
        try:
            key = bytes.fromhex(text.decode("ascii"))
            return cls(key)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path} is not a 64-hex-digit AES-256 key", hint="Restore the body key from your backup."
            ) from exc

    @staticmethod
    def _aad(seq: int, part: str) -> bytes:
        return b"bastion-audit-body/v1|%d|%s" % (seq, part.encode())

    def encrypt(self, seq: int, part: str, data: bytes) -> bytes:
        """Nonce (12 random bytes) followed by the ciphertext and tag."""
        nonce = os.urandom(12)  # random 96-bit nonces: safe far beyond any audit log's entry count
        return nonce + bytes(self._aead.encrypt(nonce, data, self._aad(seq, part)))

    def decrypt(self, seq: int, part: str, blob: bytes) -> bytes:
        """Decrypt a body stored for entry ``seq``; IntegrityError if it was altered or moved."""
        try:
            return bytes(self._aead.decrypt(blob[:12], blob[12:], self._aad(seq, part)))
        except InvalidTag as exc:
            raise IntegrityError(
                f"stored {part} body of entry {seq} fails authentication (altered, moved or wrong key)",
                hint="Check audit.body_key points at the key this log was written with.",
            ) from exc
