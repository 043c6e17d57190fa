"""``bastion bundle verify``: the offline verifier, with Bastion's errors and the trusted key checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bastion.bundle.offline_verify import BundleRefused, Sink, Verified, verify
from bastion.errors import IntegrityError, NotFound
from bastion.signing import load_public_key
from bastion.signing.keys import read_small


def read_trusted_key(path: Path) -> bytes:
    """The PEM bytes of the organisation's public key, checked to be an ECDSA key model signing accepts."""
    load_public_key(path)
    return read_small(path, "public key")


def verify_file(
    bundle: Path,
    public_pem: bytes,
    sink: Sink | None = None,
    *,
    manifest_only: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Verified:
    """Verify ``bundle`` (signature, then every byte); IntegrityError naming the file at fault."""
    if not bundle.is_file():
        raise NotFound(
            f"bundle {bundle} does not exist", hint="Pass the .tar written by 'bastion bundle create'."
        )
    try:
        return verify(bundle, public_pem, sink, on_bytes=on_bytes, manifest_only=manifest_only)
    except BundleRefused as exc:
        raise IntegrityError(
            f"bundle {bundle} refused: {exc.message}",
            hint="Do not install it. Obtain the bundle again from its signer, and check that --trust is the "
            "organisation's public key.",
        ) from exc
