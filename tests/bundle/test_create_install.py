"""What ``bastion bundle create`` writes, and install's refusals and interruption (fast paths).

The full install (venv, admission, serving) is the acceptance test in test_airgap.py; these tests check
the contents of the session's real bundle and the install paths that stop before building a venv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import parse_wheel_filename

from bastion.bundle import create_bundle, install_bundle, verify_file
from bastion.bundle.debian import DebianNeed, require
from bastion.bundle.offline_verify import canonical_header
from bastion.errors import IntegrityError, NotFound
from tests.bundle.built import Built

ROOT = Path(__file__).resolve().parents[2]


def _read(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle, "r:") as tf:
        member = tf.extractfile(name)
        assert member is not None
        return member.read()


def test_the_bundle_is_a_canonical_tar_any_tar_tool_reads(built: Built) -> None:
    with tarfile.open(built.created.path, "r:") as tf:
        members = tf.getmembers()
    assert [m.name for m in members[:2]] == ["MANIFEST.json", "MANIFEST.json.sig"]
    assert all(m.isreg() and m.mode == 0o644 and m.mtime == 0 and m.uid == 0 for m in members)
    assert any(len(m.name) > 100 for m in members)  # long wheel names travel in pax headers


def test_every_wheel_is_pinned_by_version_and_hash(built: Built) -> None:
    manifest = json.loads(_read(built.created.path, "MANIFEST.json"))
    wheels = [f for f in manifest["files"] if f["path"].startswith("wheels/")]
    reqs = _read(built.created.path, "requirements.txt").decode().splitlines()[1:]
    assert len(reqs) == len(wheels) == built.created.wheels
    pinned = {line.split("==")[0]: line.split("--hash=sha256:")[1] for line in reqs}
    for f in wheels:
        name = parse_wheel_filename(f["path"].removeprefix("wheels/"))[0]
        assert pinned[name] == f["sha256"]
    names = set(pinned)
    assert {"bastion", "llama-cpp-python", "cryptography", "cedarpy", "pip", "setuptools", "wheel"} <= names
    assert "torch" not in names and "pytest" not in names  # the runtime only


def test_the_sbom_is_valid_cyclonedx_16_and_covers_wheels_model_and_system(built: Built) -> None:
    text = _read(built.created.path, "sbom.cdx.json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    kinds = {c["type"] for c in doc["components"]}
    assert {"library", "machine-learning-model", "data"} <= kinds
    purls = {c.get("purl", "") for c in doc["components"]}
    assert any(p.startswith("pkg:pypi/llama-cpp-python@0.3.36") for p in purls)
    assert any(p.startswith("pkg:deb/debian/libgomp1@") for p in purls)  # llama.cpp's OpenMP, from the system
    model = next(c for c in doc["components"] if c["type"] == "machine-learning-model")
    gguf = model["components"][0]
    manifest = json.loads(_read(built.created.path, "MANIFEST.json"))
    digest = next(f["sha256"] for f in manifest["files"] if f["path"] == gguf["name"])
    assert gguf["hashes"][0]["content"] == digest


def test_the_model_carries_a_model_signing_signature(built: Built, tmp_path: Path) -> None:
    from bastion.signing import load_public_key, verify_model

    manifest = json.loads(_read(built.created.path, "MANIFEST.json"))
    (model,) = manifest["models"]
    gguf = tmp_path / Path(model["path"]).name
    gguf.write_bytes(_read(built.created.path, model["path"]))
    sig = tmp_path / "model.sig"
    sig.write_bytes(_read(built.created.path, model["signature"]))
    result = verify_model(gguf, sig, public_key=load_public_key(built.public_key), use_cache=False)
    assert result.manifest.root_digest() == model["root_digest"]


def test_a_missing_debian_package_is_named_with_the_apt_command() -> None:
    with pytest.raises(NotFound) as info:
        require([DebianNeed("bastion-no-such-package", "1.0", ("libnope.so.1",))])
    assert "bastion-no-such-package" in info.value.message
    assert "apt-get install bastion-no-such-package" in info.value.hint


def test_install_refuses_a_wrongly_signed_bundle_before_writing_anything(built: Built, tmp_path: Path) -> None:
    prefix = tmp_path / "pfx"
    with pytest.raises(IntegrityError):
        install_bundle(built.created.path, built.other_public_key, prefix)
    assert sorted(p.name for p in prefix.iterdir()) == [".install.lock"]


def test_an_interrupted_install_leaves_nothing_live_and_the_next_run_clears_it(built: Built, tmp_path: Path) -> None:
    prefix = tmp_path / "pfx"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "bundle", "install", str(built.created.path), "--trust",
         str(built.public_key), "--prefix", str(prefix)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        staged = list(prefix.glob(".staging-*/b/models/*/*")) if prefix.exists() else []
        if staged or list(prefix.glob("venvs/*/bin")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: as a power cut would leave it
    proc.wait()
    assert not (prefix / "current").exists()
    assert not list(prefix.glob("releases/*/.complete"))
    assert list(prefix.glob(".staging-*")) or list(prefix.glob("releases/*")) or list(prefix.glob("venvs/*"))
    # The next run (here, an incremental bundle that cannot apply: nothing is installed) clears leftovers.
    incremental = tmp_path / "incr.tar"
    create_bundle(incremental, built.private_key, [], since=built.created.manifest_path, offline=True)
    with pytest.raises(IntegrityError) as info:
        install_bundle(incremental, built.public_key, prefix)
    assert "incremental" in info.value.message
    assert not list(prefix.glob(".staging-*"))
    assert not (prefix / "current").exists()


def test_an_incremental_bundle_carries_only_what_changed(built: Built, tmp_path: Path) -> None:
    incremental = tmp_path / "incr.tar"
    created = create_bundle(incremental, built.private_key, [], since=built.created.manifest_path, offline=True)
    manifest = json.loads(created.manifest_path.read_bytes())
    assert manifest["since"]["manifest_sha256"] == built.created.manifest_sha256
    carried = {f["path"] for f in manifest["files"] if f["carried"]}
    assert "wheels/numpy-" not in " ".join(carried)
    assert created.size < built.created.size / 10
    result = verify_file(incremental, built.public_key.read_bytes())
    assert result.files == len(carried)
    # a file the incremental bundle claims not to carry, smuggled in anyway, is refused
    numpy = next(f["path"] for f in manifest["files"] if f["path"].startswith("wheels/numpy-"))
    data = incremental.read_bytes()
    with tarfile.open(incremental, "r:") as tf:
        last = tf.getmembers()[-1]
    end_at = last.offset_data + last.size + (-last.size % 512)
    smuggled = data[:end_at] + canonical_header(numpy, 3) + b"bad" + bytes(509) + bytes(10240)
    bad = tmp_path / "smuggled.tar"
    bad.write_bytes(smuggled)
    with pytest.raises(IntegrityError) as info:
        verify_file(bad, built.public_key.read_bytes())
    assert numpy in info.value.message
