"""Signing and verifying with Bastion alone: round trips, and every tampering is an IntegrityError."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import IntegrityError, UnusableInput, UsageError
from bastion.hashing import manifest_of
from bastion.signing import (
    KeyPair,
    generate_key_pair,
    load_certificates,
    load_private_key,
    load_public_key,
    sign_manifest,
    sign_model,
    verify_bundle,
    verify_model,
)
from bastion.signing.bundle import PAYLOAD_TYPE, Bundle, pae
from bastion.signing.statement import statement_bytes
from tests.signing.signing_pki import Pki, make_pki


def _sign(model: Path, key: KeyPair, out: Path, **kw: object) -> Path:
    _, bundle = sign_model(model, load_private_key(key.private_key), **kw)  # type: ignore[arg-type]
    out.write_bytes(bundle)
    return out


def _verify(model: Path, sig: Path, key: KeyPair) -> object:
    return verify_model(model, sig, public_key=load_public_key(key.public_key))


def test_key_signature_round_trip_reports_signer_and_root_digest(
    small_model: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    v = verify_model(small_model, sig, public_key=load_public_key(org_key.public_key))
    assert v.mode == "key" and v.key_hint == org_key.key_hint
    assert v.manifest.files == ("1_Pooling/config.json", "config.json", "model.safetensors")
    assert v.manifest.root_digest() == manifest_of(small_model).root_digest()


def test_changed_byte_fails_naming_the_file(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    weights = small_model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100_000] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"changed: model\.safetensors") as exc:
        _verify(small_model, sig, org_key)
    assert exc.value.exit_code == 8


def test_extra_file_fails_naming_it(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    (small_model / "modeling_evil.py").write_text("import os")
    with pytest.raises(IntegrityError, match=r"not in the signature: modeling_evil\.py"):
        _verify(small_model, sig, org_key)


def test_missing_file_fails_naming_it(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    (small_model / "1_Pooling" / "config.json").unlink()
    with pytest.raises(IntegrityError, match=r"missing: 1_Pooling/config\.json"):
        _verify(small_model, sig, org_key)


def test_wrong_key_fails(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    other = generate_key_pair(tmp_path / "other")
    with pytest.raises(IntegrityError, match="different key"):
        _verify(small_model, sig, other)


def test_wrong_key_without_hint_fails_on_the_signature_itself(
    small_model: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    doc = json.loads(sig.read_text())
    doc["verificationMaterial"]["publicKey"]["hint"] = ""  # a forger drops the label
    sig.write_text(json.dumps(doc))
    other = generate_key_pair(tmp_path / "other")
    with pytest.raises(IntegrityError, match="does not match its content or was made with a different key"):
        _verify(small_model, sig, other)


def test_payload_edited_in_the_bundle_fails(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    doc = json.loads(sig.read_text())
    stmt = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    stmt["predicate"]["resources"] = stmt["predicate"]["resources"][:1]
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    sig.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="does not match its content"):
        _verify(small_model, sig, org_key)


def test_signed_statement_whose_subject_lies_about_its_resources_is_refused(
    small_model: Path, org_key: KeyPair
) -> None:
    # Even a validly signed payload must be self-consistent: the subject digest covers the resources.
    key = load_private_key(org_key.private_key)
    good = json.loads(
        base64.b64decode(json.loads(sign_manifest(manifest_of(small_model), key))["dsseEnvelope"]["payload"])
    )
    good["subject"][0]["digest"]["sha256"] = "0" * 64
    payload = json.dumps(good).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": org_key.key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }
    with pytest.raises(UnusableInput, match="subject digest does not match"):
        verify_bundle(json.dumps(bundle).encode(), public_key=load_public_key(org_key.public_key))


def test_p384_key_round_trip_and_shard_method(small_model: Path, tmp_path: Path) -> None:
    key = generate_key_pair(tmp_path / "k384", curve="p384")
    sig = _sign(small_model, key, tmp_path / "model.sig", shard_size=65536)
    v = _verify(small_model, sig, key)
    assert v.manifest.method == "shards" and v.manifest.shard_size == 65536  # type: ignore[attr-defined]
    weights = small_model / "model.safetensors"
    with weights.open("r+b") as fh:
        fh.seek(200_000)
        fh.write(b"\x00")
    with pytest.raises(IntegrityError, match=r"changed: model\.safetensors"):
        _verify(small_model, sig, key)


def test_blake2b_round_trip(small_model: Path, org_key: KeyPair, tmp_path: Path) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig", hash_type="blake2b")
    assert _verify(small_model, sig, org_key).manifest.hash_type == "blake2b"  # type: ignore[attr-defined]


def test_signature_inside_the_model_folder_is_ignored_when_recorded(
    small_model: Path, org_key: KeyPair
) -> None:
    sig = _sign(small_model, org_key, small_model / "model.sig", ignore_paths=["model.sig"])
    assert _verify(small_model, sig, org_key).manifest.ignore_paths[-1] == "model.sig"  # type: ignore[attr-defined]


def test_certificate_signature_round_trip_names_the_signer(
    small_model: Path, pki: Pki, tmp_path: Path
) -> None:
    _, bundle = sign_model(small_model, load_private_key(pki.leaf_key), load_certificates(pki.chain))
    sig = tmp_path / "model.sig"
    sig.write_bytes(bundle)
    v = verify_model(small_model, sig, trusted_roots=load_certificates(pki.root))
    assert v.mode == "certificate" and v.certificate is not None
    assert v.certificate.subject == "CN=org model signer,O=Bastion Test"
    assert v.certificate.chain[-1] == "CN=org Root CA,O=Bastion Test"


def test_certificate_from_another_pki_is_not_trusted(small_model: Path, pki: Pki, tmp_path: Path) -> None:
    _, bundle = sign_model(small_model, load_private_key(pki.leaf_key), load_certificates(pki.chain))
    sig = tmp_path / "model.sig"
    sig.write_bytes(bundle)
    stranger = make_pki(tmp_path / "stranger", "stranger")
    with pytest.raises(IntegrityError, match="does not chain to a trusted root"):
        verify_model(small_model, sig, trusted_roots=load_certificates(stranger.root))


def test_leaf_without_signing_usage_is_refused(small_model: Path, tmp_path: Path) -> None:
    weak = make_pki(tmp_path / "weak", "weak", leaf_may_sign=False)
    _, bundle = sign_model(small_model, load_private_key(weak.leaf_key), load_certificates(weak.chain))
    with pytest.raises(IntegrityError, match="not allowed to sign"):
        verify_bundle(bundle, trusted_roots=load_certificates(weak.root))


def test_signing_with_a_certificate_of_another_key_is_a_usage_error(
    small_model: Path, pki: Pki, org_key: KeyPair
) -> None:
    with pytest.raises(UsageError, match="not the certificate of --key"):
        sign_model(small_model, load_private_key(org_key.private_key), load_certificates(pki.chain))


def test_key_signature_checked_with_roots_or_cert_signature_with_key_is_a_usage_error(
    small_model: Path, pki: Pki, org_key: KeyPair
) -> None:
    _, key_bundle = sign_model(small_model, load_private_key(org_key.private_key))
    _, cert_bundle = sign_model(small_model, load_private_key(pki.leaf_key), load_certificates(pki.chain))
    with pytest.raises(UsageError, match="key signature"):
        verify_bundle(key_bundle, trusted_roots=load_certificates(pki.root))
    with pytest.raises(UsageError, match="certificate signature"):
        verify_bundle(cert_bundle, public_key=load_public_key(org_key.public_key))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"not json", "is not JSON"),
        (lambda d: json.dumps({**d, "mediaType": "x"}).encode(), "media type"),
        (
            lambda d: json.dumps({**d, "dsseEnvelope": {**d["dsseEnvelope"], "payload": "%%%"}}).encode(),
            "base64",
        ),
        (
            lambda d: json.dumps(
                {
                    **d,
                    "dsseEnvelope": {**d["dsseEnvelope"], "signatures": d["dsseEnvelope"]["signatures"] * 2},
                }
            ).encode(),
            "exactly one DSSE signature",
        ),
        (
            lambda d: json.dumps({**d, "verificationMaterial": {"certificate": {"rawBytes": ""}}}).encode(),
            "keyless",
        ),
        (lambda d: json.dumps([1, 2]).encode(), "not an object"),
    ],
)
def test_malformed_bundles_are_unusable_input(
    small_model: Path, org_key: KeyPair, mutate: object, message: str
) -> None:
    _, bundle = sign_model(small_model, load_private_key(org_key.private_key))
    bad = mutate(json.loads(bundle))  # type: ignore[operator]
    with pytest.raises(UnusableInput, match=message):
        verify_bundle(bad, public_key=load_public_key(org_key.public_key), source="model.sig")


def test_generated_private_key_is_mode_0600_and_never_overwritten(tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "k")
    assert os.stat(pair.private_key).st_mode & 0o777 == 0o600
    assert load_private_key(pair.private_key).curve.name == "secp256r1"
    with pytest.raises(UsageError, match="already exists"):
        generate_key_pair(tmp_path / "k")
    assert [p.name for p in (tmp_path / "k").iterdir() if p.name.startswith(".")] == []


def test_unsupported_keys_are_refused_with_a_reason(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    p = tmp_path / "ed.pem"
    p.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(UnusableInput, match="not an ECDSA key"):
        load_private_key(p)
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(UnusableInput, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.pem")


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "enc.pem"
    p.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    with pytest.raises(UnusableInput, match="encrypted"):
        load_private_key(p)
    assert load_private_key(p, b"s3cret").private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (
            b'{"mediaType": "a", "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
            "duplicate key",
        ),
    ],
)
def test_hostile_json_is_unusable_input_not_a_crash(org_key: KeyPair, data: bytes, message: str) -> None:
    with pytest.raises(UnusableInput, match=message):
        verify_bundle(data, public_key=load_public_key(org_key.public_key))


def test_signed_payload_with_duplicate_keys_is_refused(small_model: Path, org_key: KeyPair) -> None:
    # Two "resources" keys could be read differently by two verifiers: never accept that.
    key = load_private_key(org_key.private_key)
    stmt = statement_bytes(manifest_of(small_model)).decode()
    payload = stmt.replace('"predicate": {', '"predicate": {"resources": [], ', 1).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = Bundle(PAYLOAD_TYPE, payload, sig, org_key.key_hint).to_bytes()
    with pytest.raises(UnusableInput, match="duplicate key 'resources'"):
        verify_bundle(bundle, public_key=load_public_key(org_key.public_key))


def test_writing_a_signature_onto_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    from bastion.signing.keys import write_atomic

    (tmp_path / "taken").mkdir()
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(tmp_path / "taken", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temp file left behind


def test_signature_output_may_not_overwrite_a_model_file(
    small_model: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    from bastion.signing import signature_path_in_model

    assert signature_path_in_model(small_model, tmp_path / "model.sig") is None
    assert signature_path_in_model(small_model, small_model / "sigs" / "model.sig") == "sigs/model.sig"
    with pytest.raises(UsageError, match="not a signature; signing would overwrite it"):
        signature_path_in_model(small_model, small_model / "config.json")
    with pytest.raises(UsageError, match="is the model itself"):
        signature_path_in_model(small_model / "config.json", small_model / "config.json")
    existing = small_model / "model.sig"
    existing.write_bytes(sign_model(small_model, load_private_key(org_key.private_key))[1])
    assert signature_path_in_model(small_model, existing) == "model.sig"  # re-signing replaces it


def test_expired_signing_certificate_still_verifies_as_documented(small_model: Path, tmp_path: Path) -> None:
    # Same rule as model_signing: no trusted timestamp, so the chain is checked at the leaf's notBefore.
    import datetime as dt

    old = make_pki(
        tmp_path / "old", "old", leaf_start=dt.datetime.now(dt.UTC) - dt.timedelta(days=20), leaf_days=5
    )
    _, bundle = sign_model(small_model, load_private_key(old.leaf_key), load_certificates(old.chain))
    assert verify_bundle(bundle, trusted_roots=load_certificates(old.root)).mode == "certificate"


def test_leaf_issued_before_its_ca_existed_is_refused(small_model: Path, tmp_path: Path) -> None:
    import datetime as dt

    early = make_pki(tmp_path / "early", "early", leaf_start=dt.datetime.now(dt.UTC) - dt.timedelta(days=60))
    _, bundle = sign_model(small_model, load_private_key(early.leaf_key), load_certificates(early.chain))
    with pytest.raises(IntegrityError, match="does not chain to a trusted root"):
        verify_bundle(bundle, trusted_roots=load_certificates(early.root))


def test_hostile_file_names_are_escaped_in_integrity_errors(
    small_model: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    sig = _sign(small_model, org_key, tmp_path / "model.sig")
    (small_model / "evil\x1b[2K\r\u202eyp.bin").write_text("hidden")
    with pytest.raises(IntegrityError) as exc:
        _verify(small_model, sig, org_key)
    assert "evil\\x1b[2K\\x0d\\u202eyp.bin" in exc.value.message
    assert "\x1b" not in exc.value.message and "\r" not in exc.value.message
