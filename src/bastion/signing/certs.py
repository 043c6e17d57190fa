"""Certificate-mode verification: the bundle's chain must lead to one of the operator's trusted roots.

Path building and validation use ``cryptography.x509.verification`` (the Rust verifier that pyca
maintains for RFC 5280), never hand-written chain logic. The leaf must be allowed to sign: key usage
``digitalSignature`` or extended key usage ``codeSigning`` -- the rule model_signing applies.

The validation time is the leaf's ``notBefore``, again as model_signing does: key and certificate
bundles carry no trusted timestamp, so "valid when issued" is the only time both tools can agree
on. The consequence, stated plainly: an expired certificate still verifies; revoke trust by removing
its root (or intermediate) from the trusted roots file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from bastion.errors import IntegrityError, UnusableInput
from bastion.signing.keys import check_curve, read_small

MAX_CHAIN_DEPTH = 8


@dataclass(frozen=True)
class CertificateSigner:
    """Who signed, as the verified leaf certificate says."""

    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    chain: tuple[str, ...]  # subjects, leaf to trusted root

    def to_json(self) -> dict[str, Any]:
        """The signer as a plain mapping."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "fingerprint_sha256": self.fingerprint_sha256,
            "chain": list(self.chain),
        }


def load_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    """All PEM certificates in ``path`` (in file order)."""
    data = read_small(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UnusableInput(f"{path} holds no PEM certificate", hint="Pass PEM certificates.") from exc
    return certs


def _leaf_may_sign(leaf: x509.Certificate) -> bool:
    try:
        if leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        return (
            ExtendedKeyUsageOID.CODE_SIGNING
            in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
    except x509.ExtensionNotFound:
        return False


def verify_chain(
    chain_der: Sequence[bytes], roots: Sequence[x509.Certificate], source: str
) -> tuple[ec.EllipticCurvePublicKey, CertificateSigner]:
    """Validate the bundle's chain (leaf first) against ``roots``; return the leaf's key and identity."""
    try:
        certs = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError as exc:
        raise UnusableInput(f"{source}: a certificate in the bundle is not DER", hint="Re-sign.") from exc
    leaf, intermediates = certs[0], certs[1:]
    if not roots:
        raise UnusableInput("no trusted root certificates were given", hint="Pass --cert-chain ROOTS.pem.")
    # CA certificates keep the Web PKI profile (basicConstraints, keyCertSign ...). The leaf's
    # extensions are checked below instead: code-signing leaves are not TLS client certificates.
    builder = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(leaf.not_valid_before_utc)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    try:
        verified = builder.build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        raise IntegrityError(
            f"{source}: the signing certificate {leaf.subject.rfc4514_string()!r} does not chain to a "
            f"trusted root ({exc})",
            hint="Check that --cert-chain holds the root CA of the signer's PKI.",
        ) from exc
    if not _leaf_may_sign(leaf):
        raise IntegrityError(
            f"{source}: the certificate {leaf.subject.rfc4514_string()!r} is not allowed to sign "
            "(no digitalSignature key usage, no codeSigning extended key usage)",
            hint="Issue the signing certificate with keyUsage=digitalSignature.",
        )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UnusableInput(f"{source}: the signing certificate has no ECDSA key", hint="Use an ECDSA key.")
    check_curve(key, source)
    return key, CertificateSigner(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "x"),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        chain=tuple(c.subject.rfc4514_string() for c in verified.chain),
    )
