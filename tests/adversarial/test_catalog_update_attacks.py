"""Attacks on signed catalog updates: wrong key, altered payload, a model signature passed off as an update."""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from pathlib import Path

import pytest

from bastion.catalog import load_catalog
from bastion.catalog.update import sign_update, verify_update
from bastion.errors import ConfigError, IntegrityError, UnusableInput
from bastion.hashing import manifest_of
from bastion.signing import generate_key_pair, load_private_key, load_public_key, sign_manifest

DIFF = """[update]
serial = 1
description = "relabel K-EXAONE as non-commercial"

[[model]]
name = "Mini-X"
developer = "Lab"
country = "US"
released = "2026-01"
params_b = 1.0
license = "MIT"
verified = false
source = "https://example.org/x"
"""


def _pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    p = generate_key_pair(tmp_path / name)
    return p.private_key, p.public_key


def _signed(tmp_path: Path, private: Path, text: str = DIFF) -> bytes:
    diff = tmp_path / "diff.toml"
    diff.write_text(text)
    return sign_update(diff, load_private_key(private))


def test_update_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    mallory, _ = _pair(tmp_path, "mallory")
    _, org_pub = _pair(tmp_path, "org")
    with pytest.raises(IntegrityError, match="different key"):
        verify_update(_signed(tmp_path, mallory), load_public_key(org_pub), "u")


def test_altered_payload_is_refused(tmp_path: Path) -> None:
    private, public = _pair(tmp_path, "org")
    doc = json.loads(_signed(tmp_path, private))
    payload = b64decode(doc["dsseEnvelope"]["payload"]).replace(b'license = "MIT"', b'license = "GPL"')
    doc["dsseEnvelope"]["payload"] = b64encode(payload).decode()
    with pytest.raises(IntegrityError, match="does not match"):
        verify_update(json.dumps(doc).encode(), load_public_key(public), "u")


def test_a_model_signature_is_not_a_catalog_update(tmp_path: Path) -> None:
    # Same key, same envelope format: only the signed payload type tells them apart.
    private, public = _pair(tmp_path, "org")
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    bundle = sign_manifest(manifest_of(model), load_private_key(private))
    with pytest.raises(UnusableInput, match="not 'application/vnd.bastion.catalog-update"):
        verify_update(bundle, load_public_key(public), "model.sig")


def test_an_update_whose_lineage_cannot_resolve_is_never_signed(tmp_path: Path) -> None:
    private, _ = _pair(tmp_path, "org")
    bad = DIFF + 'base_model = "Nowhere-1B"\nrelation = "fine-tune"\n'
    with pytest.raises(ConfigError, match="not in the catalog"):
        _signed(tmp_path, private, bad)
    assert load_catalog().find("Mini-X") is None
