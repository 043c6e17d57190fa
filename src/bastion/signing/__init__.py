"""Model signatures in the OpenSSF model-signing format, made and verified offline.

A signature is a sigstore bundle v0.3 (JSON) holding a DSSE envelope around an in-toto statement
with the model_signing v1.0 predicate: the model's manifest. Key mode (ECDSA P-256/P-384) and
certificate mode (leaf + chain, verified against the operator's trusted roots) are supported.
"""

from bastion.signing.certs import CertificateSigner, load_certificates
from bastion.signing.keys import KeyPair, generate_key_pair, key_hint, load_private_key, load_public_key
from bastion.signing.signature import (
    SignedManifest,
    SignedPayload,
    Verification,
    sign_manifest,
    sign_model,
    sign_payload,
    signature_path_in_model,
    verify_bundle,
    verify_model,
    verify_payload,
)

__all__ = [
    "CertificateSigner",
    "KeyPair",
    "SignedManifest",
    "SignedPayload",
    "Verification",
    "generate_key_pair",
    "key_hint",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "sign_manifest",
    "sign_model",
    "sign_payload",
    "signature_path_in_model",
    "verify_bundle",
    "verify_model",
    "verify_payload",
]
