"""Golden files for the formats other people store: manifests, the signed statement, signatures.

Every ``*.sig`` in ``golden/`` must keep verifying, including signatures made by earlier Bastion
releases and by model_signing. Regenerate the current release's files only on purpose:

    BASTION_UPDATE_GOLDEN=1 .venv/bin/pytest tests/signing/test_golden.py

(this never deletes older ``*.sig`` files; delete one only if that release's format is dropped).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import model_signing as ms
import pytest

import bastion
from bastion.hashing import manifest_of
from bastion.signing import load_certificates, load_private_key, load_public_key, sign_manifest, verify_model
from bastion.signing.bundle import parse_bundle
from bastion.signing.statement import statement_bytes
from tests.signing.signing_pki import make_pki

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BASTION_UPDATE_GOLDEN") == "1"


def build_model(root: Path) -> Path:
    """The golden model: fixed bytes, so its manifest never changes."""
    (root / "tokenizer").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes(i * 7 % 251 for i in range(300_000)))
    (root / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n')
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}\n')
    (root / "README.md").write_text("# golden model\n\nUsed by Bastion's format tests.\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # ignored, as by model_signing
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return build_model(tmp_path / "golden-model")


def _check(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(data)
    assert path.exists(), f"{path} is missing; create it with BASTION_UPDATE_GOLDEN=1"
    assert data == path.read_bytes(), f"{name} changed: a format other people store would change"


def _keys() -> None:
    """Create the golden test keys and PKI once (test-only material, committed on purpose)."""
    if not UPDATE or (GOLDEN / "test-key.pem").exists():
        return
    from bastion.signing import generate_key_pair

    generate_key_pair(GOLDEN, name="test-key")
    pki = make_pki(GOLDEN / "pki-tmp", "golden")
    for src, dst in [
        (pki.root, "root.pem"),
        (pki.chain, "chain.pem"),
        (pki.leaf_key, "leaf-key.pem"),
        (pki.leaf_cert, "leaf.pem"),
        (pki.intermediate, "intermediate.pem"),
    ]:
        shutil.move(src, GOLDEN / f"pki-{dst}")
    shutil.rmtree(GOLDEN / "pki-tmp")


@pytest.mark.parametrize("shards", [False, True])
def test_manifest_json_is_unchanged(model: Path, shards: bool) -> None:
    m = manifest_of(model, shard_size=65_536 if shards else None, use_cache=False)
    text = json.dumps(m.to_json(), indent=2, sort_keys=True) + "\n"
    _check("manifest-shards.json" if shards else "manifest.json", text.encode())


def test_signed_statement_bytes_are_unchanged(model: Path) -> None:
    _check("statement.json", statement_bytes(manifest_of(model, use_cache=False)))


def test_bundle_layout_is_unchanged_apart_from_the_ecdsa_signature(model: Path) -> None:
    _keys()
    version = bastion.__version__
    key = load_private_key(GOLDEN / "test-key.pem")
    chain = load_certificates(GOLDEN / "pki-chain.pem")
    for mode, bundle in [
        ("key", sign_manifest(manifest_of(model, use_cache=False), key)),
        (
            "cert",
            sign_manifest(
                manifest_of(model, use_cache=False), load_private_key(GOLDEN / "pki-leaf-key.pem"), chain
            ),
        ),
    ]:
        path = GOLDEN / f"bastion-{version}-{mode}.sig"
        if UPDATE and not path.exists():
            path.write_bytes(bundle)
        stored, fresh = json.loads(path.read_bytes()), json.loads(bundle)
        # ECDSA signatures are randomised; everything else must be byte-for-byte what we stored.
        for doc in (stored, fresh):
            doc["dsseEnvelope"]["signatures"][0]["sig"] = "<ecdsa>"
        assert fresh == stored


def test_model_signing_reference_signatures_exist() -> None:
    _keys()
    if UPDATE:
        model = build_model(GOLDEN / "tmp-model")
        try:
            ms.signing.Config().use_elliptic_key_signer(private_key=GOLDEN / "test-key.pem").sign(
                model, GOLDEN / f"model_signing-{ms.__version__}-key.sig"
            )
            ms.signing.Config().use_certificate_signer(
                private_key=GOLDEN / "pki-leaf-key.pem",
                signing_certificate=GOLDEN / "pki-leaf.pem",
                certificate_chain=[GOLDEN / "pki-intermediate.pem"],
            ).sign(model, GOLDEN / f"model_signing-{ms.__version__}-cert.sig")
        finally:
            shutil.rmtree(model)
    assert sorted(p.name for p in GOLDEN.glob("model_signing-*.sig"))


@pytest.mark.parametrize("sig", sorted(p.name for p in GOLDEN.glob("*.sig")) or ["<none yet>"])
def test_every_stored_signature_still_verifies(model: Path, sig: str) -> None:
    path = GOLDEN / sig
    if "cert" in sig:
        v = verify_model(
            model, path, trusted_roots=load_certificates(GOLDEN / "pki-root.pem"), use_cache=False
        )
        assert v.certificate is not None
    else:
        v = verify_model(
            model, path, public_key=load_public_key(GOLDEN / "test-key.pub.pem"), use_cache=False
        )
    assert v.manifest.root_digest() == manifest_of(model, use_cache=False).root_digest()
    assert parse_bundle(path.read_bytes(), sig).payload_type == "application/vnd.in-toto+json"
