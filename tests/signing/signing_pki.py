"""A real, small PKI for tests: root CA -> intermediate CA -> code-signing leaf (all ECDSA)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files a test needs."""

    root: Path  # trusted roots file (--cert-chain for verify)
    chain: Path  # leaf then intermediate (--cert for sign)
    leaf_cert: Path
    intermediate: Path
    leaf_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bastion Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    eku: bool = True,
    key_usage: bool = True,
    days: int = 365,
    start: dt.datetime | None = None,
) -> x509.Certificate:
    now = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        if key_usage:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(
        issuer_key, hashes.SHA384() if isinstance(issuer_key.curve, ec.SECP384R1) else hashes.SHA256()
    )


def make_pki(
    folder: Path,
    name: str = "org",
    *,
    leaf_may_sign: bool = True,
    leaf_start: dt.datetime | None = None,
    leaf_days: int = 365,
) -> Pki:
    """Write a root, an intermediate and a leaf (with its key) under ``folder``.

    The CAs are valid from 30 days ago for 10 years; ``leaf_start``/``leaf_days`` set the leaf's window.
    """
    ca_start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    folder.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert(f"{name} Root CA", root_key, None, root_key, ca=True, start=ca_start, days=3650)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = _cert(f"{name} Model Signing CA", inter_key, root, root_key, ca=True, start=ca_start, days=3650)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(
        f"{name} model signer",
        leaf_key,
        inter,
        inter_key,
        ca=False,
        eku=leaf_may_sign,
        key_usage=leaf_may_sign,
        start=leaf_start,
        days=leaf_days,
    )
    paths = Pki(
        folder / f"{name}-root.pem",
        folder / f"{name}-chain.pem",
        folder / f"{name}-leaf.pem",
        folder / f"{name}-intermediate.pem",
        folder / f"{name}-leaf-key.pem",
    )
    paths.root.write_bytes(_pem(root))
    paths.chain.write_bytes(_pem(leaf) + _pem(inter))
    paths.leaf_cert.write_bytes(_pem(leaf))
    paths.intermediate.write_bytes(_pem(inter))
    paths.leaf_key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths
