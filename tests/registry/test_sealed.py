"""Sealed copies: the bytes a loader reads cannot change, and they are the bytes that were hashed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bastion import bundled
from bastion.errors import UnusableInput
from bastion.hashing import manifest_of
from bastion.hashing.descriptor import manifest_of_descriptors, sha256_fd
from bastion.registry import Registry, seal, seal_unverified
from bastion.registry.store import m001_admitted_models
from bastion.store import Migrations, Target, open_database

SMOL = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_a_sealed_file_refuses_every_write_and_hashes_like_the_disk(tmp_path: Path) -> None:
    weights = seal_unverified(bundled.smollm2())
    try:
        assert weights.digest == SMOL
        fd, size = weights.sealed.files["."]
        assert size == bundled.smollm2().stat().st_size
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
        with open(weights.sealed.load_path, "r+b", buffering=0) as reopened, pytest.raises(PermissionError):
            reopened.write(b"x")  # reopening through /proc gives no way around the seal
        with pytest.raises(OSError) as exc:
            os.ftruncate(fd, 0)
        assert exc.value.errno == errno.EPERM
    finally:
        weights.close()
    assert weights.sealed.files == {}


def test_a_sealed_folder_holds_only_the_named_files_and_matches_manifest_of(tmp_path: Path) -> None:
    folder = bundled.minilm()
    names = list(manifest_of(folder).files)
    sealed = seal(folder, names)
    try:
        linked = sorted(str(p.relative_to(sealed.load_path)) for p in sealed.load_path.rglob("*") if p.is_file())
        assert linked == sorted(names)
        ours = manifest_of_descriptors(sealed.files, model_name=folder.name)
        assert ours.root_digest() == manifest_of(folder, use_cache=False).root_digest()
        fd, size = sealed.files["model.safetensors"]
        assert sha256_fd(fd, size) == manifest_of(folder).digest_of("model.safetensors")
    finally:
        sealed.close()
    assert not sealed.load_path.exists()


def test_a_symlinked_model_file_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "model.gguf"
    link.symlink_to(bundled.smollm2())
    with pytest.raises(UnusableInput, match="symbolic link"):
        seal(tmp_path, ["model.gguf"])


def test_a_name_that_climbs_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnusableInput, match="not a file inside"):
        seal(tmp_path, ["../etc/passwd"])


def test_revocations_are_carried_over_from_a_version_1_database(store_target: Target) -> None:
    db = store_target
    v1 = Migrations("registry")
    v1(m001_admitted_models)
    conn = open_database(db, v1)
    conn.execute(
        "INSERT INTO admitted_models (name, path, weights_digest, root_digest, signature, signer, verdict,"
        " findings, bom, identity, decision, policy, admitted_at, admitted_by, revoked_at, revoked_by)"
        " VALUES ('old', '/m.gguf', ?, 'sha256:root', '{}', 'k', 'pass', '[]', '{}', '{}', '{}', 'p',"
        " '2026-01-01', 'me', '2026-02-01', 'me')",
        (SMOL,),
    )
    conn.close()
    registry = Registry(db)
    assert registry.revocation_of(SMOL) == {
        "name": "old", "revoked_at": "2026-02-01", "revoked_by": "me", "reason": ""
    }
    assert not registry.still_admitted(1, SMOL)
