"""Interoperability with the reference implementation (``model-signing`` 1.1.1), both ways, key and
certificate mode, on the real bundled SmolLM2 GGUF (in a folder) and the MiniLM folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import model_signing as ms
import pytest

from bastion.errors import IntegrityError
from bastion.signing import (
    KeyPair,
    load_certificates,
    load_private_key,
    load_public_key,
    sign_model,
    verify_model,
)
from tests.signing.signing_pki import Pki

MODELS = ["smollm2_folder", "minilm_folder"]


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(request.param)
    return path


def _ms_verify_key(model: Path, sig: Path, pub: Path) -> None:
    ms.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)


@pytest.mark.parametrize("shards", [False, True])
def test_bastion_key_signature_verifies_with_model_signing(
    model: Path, org_key: KeyPair, tmp_path: Path, shards: bool
) -> None:
    sig = tmp_path / "model.sig"
    _, bundle = sign_model(
        model, load_private_key(org_key.private_key), shard_size=32_000_000 if shards else None
    )
    sig.write_bytes(bundle)
    config = ms.verifying.Config().use_elliptic_key_verifier(public_key=org_key.public_key)
    if shards:
        # model_signing 1.1.1 cannot guess the shard config from its own signatures (shard_size comes
        # back from JSON as a float and breaks range()), so it must be told, as its docs show.
        config.set_hashing_config(ms.hashing.Config().use_shard_serialization(shard_size=32_000_000))
    config.verify(model, sig)


def test_model_signing_key_signature_verifies_in_bastion(
    model: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    ms.signing.Config().use_elliptic_key_signer(private_key=org_key.private_key).sign(model, sig)
    v = verify_model(model, sig, public_key=load_public_key(org_key.public_key))
    assert v.mode == "key" and v.key_hint == org_key.key_hint


def test_model_signing_shard_signature_verifies_in_bastion(
    org_key: KeyPair, smollm2_folder: Path, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    (
        ms.signing.Config()
        .use_elliptic_key_signer(private_key=org_key.private_key)
        .set_hashing_config(ms.hashing.Config().use_shard_serialization(shard_size=10_000_000))
        .sign(smollm2_folder, sig)
    )
    v = verify_model(smollm2_folder, sig, public_key=load_public_key(org_key.public_key))
    assert v.manifest.method == "shards" and len(v.manifest.resources) == 10


def test_bastion_certificate_signature_verifies_with_model_signing(
    model: Path, pki: Pki, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    _, bundle = sign_model(model, load_private_key(pki.leaf_key), load_certificates(pki.chain))
    sig.write_bytes(bundle)
    ms.verifying.Config().use_certificate_verifier(certificate_chain=[pki.root]).verify(model, sig)


def test_model_signing_certificate_signature_verifies_in_bastion(
    model: Path, pki: Pki, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    ms.signing.Config().use_certificate_signer(
        private_key=pki.leaf_key, signing_certificate=pki.leaf_cert, certificate_chain=[pki.intermediate]
    ).sign(model, sig)
    v = verify_model(model, sig, trusted_roots=load_certificates(pki.root))
    assert v.certificate is not None and v.certificate.subject.startswith("CN=org model signer")


def test_model_signing_signature_of_a_tampered_gguf_fails_in_bastion_naming_it(
    smollm2_folder: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    model = tmp_path / "copy"
    shutil.copytree(smollm2_folder, model)
    sig = tmp_path / "model.sig"
    ms.signing.Config().use_elliptic_key_signer(private_key=org_key.private_key).sign(model, sig)
    gguf = model / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with gguf.open("r+b") as fh:
        fh.seek(50_000_000)
        b = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(IntegrityError, match=r"changed: SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        verify_model(model, sig, public_key=load_public_key(org_key.public_key))
    with pytest.raises(ValueError, match="Hash mismatch"):
        _ms_verify_key(model, sig, org_key.public_key)


def test_bastion_signature_with_extra_file_fails_in_model_signing_too(
    minilm_folder: Path, org_key: KeyPair, tmp_path: Path
) -> None:
    model = tmp_path / "copy"
    shutil.copytree(minilm_folder, model)
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_model(model, load_private_key(org_key.private_key))[1])
    (model / "modeling_bert.py").write_text("import os; os.system('id')")
    with pytest.raises(ValueError, match="Extra files"):
        _ms_verify_key(model, sig, org_key.public_key)
    with pytest.raises(IntegrityError, match=r"not in the signature: modeling_bert\.py"):
        verify_model(model, sig, public_key=load_public_key(org_key.public_key))
