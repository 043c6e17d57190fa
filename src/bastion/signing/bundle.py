"""The sigstore bundle v0.3 JSON with a DSSE envelope, as model_signing writes it for key and
certificate signatures (``tlogEntries`` empty: no transparency log, nothing online).

Parsing is strict: a bundle is attacker-supplied input, so every field is type-checked and base64
is decoded with validation, and anything unexpected is an :class:`UnusableInput` naming the file.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from bastion.errors import UnusableInput
from bastion.formats.strict_json import no_duplicate_keys

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_BUNDLE = 16 << 20  # a manifest of 10,000 shards is about 2 MB; 16 MiB leaves room and bounds memory


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed (binds the type to the bytes)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Bundle:
    """The parts of a bundle a verifier needs."""

    payload_type: str
    payload: bytes
    signature: bytes
    key_hint: str | None = None
    certificates: tuple[bytes, ...] = ()  # DER, signing certificate first

    @property
    def mode(self) -> str:
        """``certificate`` when the bundle carries a chain, else ``key``."""
        return "certificate" if self.certificates else "key"

    def to_bytes(self) -> bytes:
        """Serialise as bundle v0.3 JSON (the same field names and layout model_signing writes)."""
        material: dict[str, Any]
        if self.certificates:
            material = {
                "x509CertificateChain": {"certificates": [{"rawBytes": _b64(c)} for c in self.certificates]},
                "tlogEntries": [],
            }
        else:
            material = {"publicKey": {"hint": self.key_hint or ""}, "tlogEntries": []}
        doc = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": material,
            "dsseEnvelope": {
                "payload": _b64(self.payload),
                "payloadType": self.payload_type,
                "signatures": [{"sig": _b64(self.signature), "keyid": ""}],
            },
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise UnusableInput(f"{source}: {what} is not a base64 string", hint=_HINT)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnusableInput(f"{source}: {what} is not valid base64", hint=_HINT) from exc


_HINT = "The signature file is damaged or not a model-signing bundle; ask the signer for it again."


def _obj(value: Any, what: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnusableInput(f"{source}: {what} is missing or not an object", hint=_HINT)
    return value


def parse_bundle(data: bytes, source: str) -> Bundle:
    """Parse bundle JSON read from ``source`` (a file name, for messages); no cryptography here."""
    if len(data) > MAX_BUNDLE:
        raise UnusableInput(f"{source} is larger than {MAX_BUNDLE >> 20} MiB", hint=_HINT)
    try:
        doc = json.loads(data, object_pairs_hook=no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise UnusableInput(f"{source} is not JSON: {exc}", hint=_HINT) from exc
    except RecursionError as exc:  # '[[[[...' nested beyond the parser's stack
        raise UnusableInput(f"{source} is not JSON: nested too deeply", hint=_HINT) from exc
    doc = _obj(doc, "the bundle", source)
    media = doc.get("mediaType")
    if media != BUNDLE_MEDIA_TYPE:
        raise UnusableInput(
            f"{source} has media type {media!r}; expected {BUNDLE_MEDIA_TYPE}",
            hint="Only sigstore bundle v0.3 signatures (model_signing >= 1.0) are supported.",
        )
    material = _obj(doc.get("verificationMaterial"), "verificationMaterial", source)
    envelope = _obj(doc.get("dsseEnvelope"), "dsseEnvelope", source)

    key_hint: str | None = None
    certificates: tuple[bytes, ...] = ()
    if "x509CertificateChain" in material:
        chain = _obj(material["x509CertificateChain"], "x509CertificateChain", source)
        certs = chain.get("certificates")
        if not isinstance(certs, list) or not certs:
            raise UnusableInput(f"{source}: the certificate chain is empty", hint=_HINT)
        certificates = tuple(
            _unb64(_obj(c, "certificate", source).get("rawBytes"), "a certificate", source) for c in certs
        )
    elif "publicKey" in material:
        hint = _obj(material["publicKey"], "publicKey", source).get("hint")
        if hint is not None and not isinstance(hint, str):
            raise UnusableInput(f"{source}: publicKey.hint is not a string", hint=_HINT)
        key_hint = hint or None
    elif "certificate" in material:
        # Keyless (Fulcio) bundles need Rekor and a Sigstore trust root: not an offline check.
        raise UnusableInput(
            f"{source} is a Sigstore keyless signature",
            hint="Bastion verifies key and certificate signatures offline; re-sign with a key or your PKI.",
        )
    else:
        raise UnusableInput(f"{source}: no public key or certificate chain in the bundle", hint=_HINT)

    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise UnusableInput(f"{source}: dsseEnvelope.payloadType is missing", hint=_HINT)
    sigs = envelope.get("signatures")
    # Exactly one signature: with several, which one was checked would be ambiguous to a reader.
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise UnusableInput(f"{source}: expected exactly one DSSE signature", hint=_HINT)
    return Bundle(
        payload_type=payload_type,
        payload=_unb64(envelope.get("payload"), "the payload", source),
        signature=_unb64(_obj(sigs[0], "signature", source).get("sig"), "the signature", source),
        key_hint=key_hint,
        certificates=certificates,
    )
