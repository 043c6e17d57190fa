"""Sign a model's manifest and verify a model against a signature, offline.

Split so the admission pipeline and the gateway can use the pure parts: ``sign_manifest`` and
``verify_bundle`` only do cryptography on bytes; ``sign_model`` and ``verify_model`` add hashing
the files on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import BastionError, IntegrityError, UnusableInput, UsageError
from bastion.hashing import Manifest, compare, manifest_of
from bastion.signing.bundle import MAX_BUNDLE, PAYLOAD_TYPE, Bundle, pae, parse_bundle
from bastion.signing.certs import CertificateSigner, verify_chain
from bastion.signing.keys import hash_for, key_hint, read_small
from bastion.signing.statement import from_statement, statement_bytes

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Verification:
    """A model that matched its signature: what was signed, by whom, and the manifest on disk."""

    model: str
    mode: str  # "key" or "certificate"
    key_hint: str
    manifest: Manifest
    certificate: CertificateSigner | None = None

    def to_json(self) -> dict[str, Any]:
        """The verification result as a plain mapping (``bastion verify --json``)."""
        return {
            "verified": True,
            "model": self.model,
            "mode": self.mode,
            "key_hint": self.key_hint,
            "certificate": self.certificate.to_json() if self.certificate else None,
            "root_digest": self.manifest.root_digest(),
            "serialization": self.manifest.serialization(),
            "files": len(self.manifest.files),
            "total_bytes": self.manifest.total_bytes,
        }


@dataclass(frozen=True)
class SignedManifest:
    """A manifest whose signature checked out, before any file was compared."""

    manifest: Manifest
    mode: str
    key_hint: str
    certificate: CertificateSigner | None = None


def sign_manifest(
    manifest: Manifest,
    private_key: ec.EllipticCurvePrivateKey,
    certificate_chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign ``manifest``; return the bundle JSON bytes. With a chain, its first certificate must
    carry the private key's public half (certificate mode); without, the bundle names the key."""
    return sign_payload(PAYLOAD_TYPE, statement_bytes(manifest), private_key, certificate_chain)


def sign_payload(
    payload_type: str,
    payload: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    certificate_chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign any ``payload`` in the same DSSE bundle as model signatures; ``payload_type`` is signed
    with it, so a signature made for one kind of document cannot be replayed as another."""
    public = private_key.public_key()
    if certificate_chain and certificate_chain[0].public_key() != public:
        raise UsageError(
            "the first certificate in --cert is not the certificate of --key",
            hint="Put the signing (leaf) certificate first in the chain file, then its issuers.",
        )
    signature = private_key.sign(pae(payload_type, payload), ec.ECDSA(hash_for(public)))
    der = tuple(c.public_bytes(serialization.Encoding.DER) for c in certificate_chain)
    return Bundle(payload_type, payload, signature, key_hint(public), der).to_bytes()


def verify_bundle(
    data: bytes,
    *,
    public_key: ec.EllipticCurvePublicKey | None = None,
    trusted_roots: Sequence[x509.Certificate] = (),
    source: str = "signature",
) -> SignedManifest:
    """Check the bundle's signature with ``public_key`` (key mode) or ``trusted_roots`` (certificate
    mode) and return the signed manifest. Raises IntegrityError if it does not verify."""
    signed = verify_payload(
        data, PAYLOAD_TYPE, public_key=public_key, trusted_roots=trusted_roots, source=source
    )
    return SignedManifest(
        from_statement(signed.payload, source), signed.mode, signed.key_hint, signed.certificate
    )


@dataclass(frozen=True)
class SignedPayload:
    """A payload whose signature checked out, and who signed it."""

    payload: bytes
    mode: str
    key_hint: str
    certificate: CertificateSigner | None = None


def verify_payload(
    data: bytes,
    payload_type: str,
    *,
    public_key: ec.EllipticCurvePublicKey | None = None,
    trusted_roots: Sequence[x509.Certificate] = (),
    source: str = "signature",
) -> SignedPayload:
    """Check a DSSE bundle of ``payload_type`` against ``public_key`` or ``trusted_roots`` and return
    its payload. Raises IntegrityError if it does not verify, UnusableInput if it is another type."""
    if (public_key is None) == (not trusted_roots):
        raise UsageError(
            "verify with exactly one of a public key or trusted roots", hint="Pass --key or --cert-chain."
        )
    bundle = parse_bundle(data, source)
    cert: CertificateSigner | None = None
    if public_key is not None:
        if bundle.certificates:
            raise UsageError(
                f"{source} is a certificate signature", hint="Verify it with --cert-chain ROOTS.pem."
            )
        key = public_key
        # The hint is only a label: the signature check below is what proves the key. But a hint
        # that names another key lets us say "wrong key" instead of "altered".
        if bundle.key_hint and bundle.key_hint != key_hint(key):
            raise IntegrityError(
                f"{source} was signed by a different key (key hint {bundle.key_hint[:16]}...)",
                hint="Verify with the public key of the organisation that signed it.",
            )
    else:
        if not bundle.certificates:
            raise UsageError(f"{source} is a key signature", hint="Verify it with --key PUBLIC.pem.")
        key, cert = verify_chain(bundle.certificates, trusted_roots, source)
    try:
        key.verify(bundle.signature, pae(bundle.payload_type, bundle.payload), ec.ECDSA(hash_for(key)))
    except InvalidSignature as exc:
        raise IntegrityError(
            f"{source}: the signature does not match its content or was made with a different key",
            hint="The signature file was altered, or it belongs to another signer.",
        ) from exc
    if bundle.payload_type != payload_type:
        raise UnusableInput(
            f"{source}: signed payload is {bundle.payload_type!r}, not {payload_type!r}",
            hint="This file is a signature over another kind of document; pass the right file.",
        )
    return SignedPayload(bundle.payload, bundle.mode, key_hint(key), cert)


def sign_model(
    path: Path,
    private_key: ec.EllipticCurvePrivateKey,
    certificate_chain: Sequence[x509.Certificate] = (),
    *,
    hash_type: str = "sha256",
    shard_size: int | None = None,
    ignore_paths: Iterable[str] = (),
    use_cache: bool = True,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> tuple[Manifest, bytes]:
    """Hash the model at ``path`` and sign its manifest; return the manifest and the bundle bytes.

    ``ignore_paths`` (relative to the model folder, e.g. the signature file when it is written inside
    the folder) are recorded in the signature, as model_signing records them.
    """
    manifest = manifest_of(
        path,
        hash_type=hash_type,
        shard_size=shard_size,
        ignore_paths=ignore_paths,
        use_cache=use_cache,
        on_total=on_total,
        on_progress=on_progress,
    )
    return manifest, sign_manifest(manifest, private_key, certificate_chain)


def verify_model(
    path: Path,
    signature: Path,
    *,
    public_key: ec.EllipticCurvePublicKey | None = None,
    trusted_roots: Sequence[x509.Certificate] = (),
    use_cache: bool = True,
    on_total: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> Verification:
    """Verify ``signature`` and that the model at ``path`` is exactly what it signed.

    Raises IntegrityError naming every changed, extra or missing file.
    """
    data = read_small(signature, "signature", MAX_BUNDLE)
    signed = verify_bundle(data, public_key=public_key, trusted_roots=trusted_roots, source=str(signature))
    expected = signed.manifest
    ignores = list(expected.ignore_paths)
    inside = _relative_inside(signature, path)
    if inside is not None:
        ignores.append(inside)  # the signature file itself is not part of the model
    actual = manifest_of(
        path,
        hash_type=expected.hash_type,
        shard_size=expected.shard_size,
        ignore_paths=ignores,
        use_cache=use_cache,
        on_total=on_total,
        on_progress=on_progress,
    )
    diff = compare(expected, actual)
    if diff:
        raise IntegrityError(
            f"{path} does not match its signature {signature}: {diff.describe()}",
            hint="The model was modified after signing; do not load it. Obtain the signed original.",
        )
    return Verification(str(path), signed.mode, signed.key_hint, actual, signed.certificate)


def signature_path_in_model(model: Path, output: Path) -> str | None:
    """Where ``output`` sits inside the model folder (to record as ignored), or None if outside.

    A signature written inside the model folder is not part of the model: it is recorded as an
    ignored path, as model_signing does, so neither tool sees it as an extra file. Refuses an output
    that would overwrite a model file (``-o config.json`` by mistake) or the model itself.
    """
    rel = _relative_inside(output, model)
    if rel is None:
        return None
    if rel == "." or model.is_file():
        raise UsageError(f"{output} is the model itself", hint="Write the signature next to the model.")
    if output.exists():
        try:
            parse_bundle(read_small(output, "existing file", MAX_BUNDLE), str(output))
        except BastionError as exc:
            raise UsageError(
                f"{output} exists in the model and is not a signature; signing would overwrite it",
                hint="Choose another output name, e.g. model.sig.",
            ) from exc
    return rel


def _relative_inside(file: Path, folder: Path) -> str | None:
    try:
        return file.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None
