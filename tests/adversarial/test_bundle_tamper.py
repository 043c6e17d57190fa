"""Attacks on a transfer bundle: each is refused, offline, and the message names the file at fault.

The bundle is the real one built for this session (Bastion's wheelhouse and SmolLM2). Byte flips are
made in a copy; additions and removals rewrite the tar around the member, keeping the signed manifest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.bundle import verify_file
from bastion.bundle.offline_verify import BLOCK, canonical_header
from bastion.errors import IntegrityError
from tests.bundle.built import Built, built_bundle, cleanup


@pytest.fixture(scope="session")
def built() -> Iterator[Built]:
    """The session's real bundle (shared with tests/bundle; kept here, not in a conftest of this folder)."""
    yield built_bundle()
    cleanup()


def _members(bundle: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(bundle, "r:") as tf:
        return {m.name: m for m in tf.getmembers()}


@pytest.fixture(scope="module")
def layout(built: Built) -> dict[str, tarfile.TarInfo]:
    return _members(built.created.path)


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "bundle.tar"
    shutil.copyfile(built.created.path, dest)
    yield dest


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def _refused(bundle: Path, built: Built) -> str:
    with pytest.raises(IntegrityError) as info:
        verify_file(bundle, built.public_key.read_bytes())
    return info.value.message


def _name(layout: dict[str, tarfile.TarInfo], prefix: str, suffix: str = "") -> str:
    return next(n for n in layout if n.startswith(prefix) and n.endswith(suffix))


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        ("wheels/numpy-", ".whl"),
        ("wheels/bastion-", ".whl"),
        ("models/smollm2/", ".gguf"),
        ("models/smollm2.sig", ""),
        ("sbom.cdx.json", ""),
        ("requirements.txt", ""),
        ("bootstrap.sh", ""),
        ("offline_verify.py", ""),
    ],
)
def test_a_flipped_byte_in_a_file_is_refused_naming_it(
    built: Built, copy: Path, layout: dict[str, tarfile.TarInfo], prefix: str, suffix: str
) -> None:
    name = _name(layout, prefix, suffix)
    member = layout[name]
    _flip(copy, member.offset_data + member.size // 2)
    message = _refused(copy, built)
    assert name in message and "altered" in message


def test_a_flipped_byte_in_the_manifest_is_refused(built: Built, copy: Path, layout: dict[str, tarfile.TarInfo]) -> None:
    m = layout["MANIFEST.json"]
    _flip(copy, m.offset_data + m.size // 2)
    assert "MANIFEST.json" in _refused(copy, built)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_a_flipped_byte_in_the_signature_is_refused(
    built: Built, copy: Path, layout: dict[str, tarfile.TarInfo], where: float
) -> None:
    s = layout["MANIFEST.json.sig"]
    _flip(copy, s.offset_data + int(s.size * where))
    assert "MANIFEST.json.sig" in _refused(copy, built)


def test_a_flipped_byte_in_a_tar_header_is_refused_naming_the_file(
    built: Built, copy: Path, layout: dict[str, tarfile.TarInfo]
) -> None:
    name = _name(layout, "models/smollm2/", ".gguf")
    _flip(copy, layout[name].offset + 136 + 3)  # the header's mtime field (never hashed as data)
    assert name in _refused(copy, built)


def _rewrite(src: Path, dest: Path, drop: str | None = None, add: tuple[str, bytes] | None = None,
             after: str | None = None) -> None:
    """Copy the tar member by member (raw bytes), leaving one out or inserting one after ``after``."""
    members = _members(src)
    ordered = sorted(members.values(), key=lambda m: m.offset)
    with src.open("rb") as fh, dest.open("wb") as out:
        for m in ordered:
            fh.seek(m.offset)
            raw = fh.read(m.offset_data - m.offset + m.size + (-m.size % BLOCK))
            if m.name != drop:
                out.write(raw)
            if add is not None and m.name == after:
                out.write(canonical_header(add[0], len(add[1])) + add[1] + bytes(-len(add[1]) % BLOCK))
        out.write(bytes(20 * BLOCK))


def test_a_removed_file_is_refused_naming_it(built: Built, tmp_path: Path, layout: dict[str, tarfile.TarInfo]) -> None:
    name = _name(layout, "wheels/cryptography-")
    bad = tmp_path / "removed.tar"
    _rewrite(built.created.path, bad, drop=name)
    message = _refused(bad, built)
    assert name in message and "removed" in message


def test_an_added_file_is_refused_naming_it(built: Built, tmp_path: Path) -> None:
    bad = tmp_path / "added.tar"
    _rewrite(built.created.path, bad, add=("wheels/evil-1.0-py3-none-any.whl", b"PK\x05\x06" + bytes(18)),
             after="requirements.txt")
    message = _refused(bad, built)
    assert "wheels/evil-1.0-py3-none-any.whl" in message and "added" in message


def test_a_second_copy_of_a_file_is_refused(built: Built, tmp_path: Path) -> None:
    # tar tools let the last copy win on extraction: an appended, altered copy must not slip through.
    bad = tmp_path / "dup.tar"
    _rewrite(built.created.path, bad, add=("requirements.txt", b"evil==1.0\n"), after="sbom.cdx.json")
    assert "requirements.txt" in _refused(bad, built)


def test_data_after_the_end_of_the_archive_is_refused(built: Built, copy: Path) -> None:
    with copy.open("ab") as fh:
        fh.write(b"#!/bin/sh\nrm -rf /\n")
    assert "after its end-of-archive marker" in _refused(copy, built)


def test_a_path_escaping_the_prefix_is_refused(built: Built, tmp_path: Path) -> None:
    bad = tmp_path / "escape.tar"
    header = bytearray(canonical_header("wheels/x.whl", 4))
    header[0:12] = b"../../x.whl\0"
    with built.created.path.open("rb") as src, bad.open("wb") as out:
        # manifest and signature kept, then the hostile member
        members = sorted(_members(built.created.path).values(), key=lambda m: m.offset)
        sig = members[1]
        out.write(src.read(sig.offset_data + sig.size + (-sig.size % BLOCK)))
        out.write(bytes(header) + b"evil" + bytes(BLOCK - 4) + bytes(20 * BLOCK))
    assert "../../x.whl" in _refused(bad, built)


def test_a_bundle_signed_by_another_key_is_refused(built: Built) -> None:
    with pytest.raises(IntegrityError) as info:
        verify_file(built.created.path, built.other_public_key.read_bytes())
    assert "MANIFEST.json.sig" in info.value.message and "another key" in info.value.message


def test_an_unsigned_bundle_is_refused(built: Built, tmp_path: Path) -> None:
    bad = tmp_path / "unsigned.tar"
    _rewrite(built.created.path, bad, drop="MANIFEST.json.sig")
    assert "unsigned" in _refused(bad, built)


def test_the_cli_refuses_with_exit_8_and_names_the_file(
    built: Built, copy: Path, layout: dict[str, tarfile.TarInfo]
) -> None:
    name = _name(layout, "models/smollm2/", ".gguf")
    _flip(copy, layout[name].offset_data + 12345)
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "bundle", "verify", str(copy), "--trust", str(built.public_key)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 8
    assert name in proc.stderr and "Traceback" not in proc.stderr


def test_the_standalone_verifier_refuses_too(built: Built, copy: Path, layout: dict[str, tarfile.TarInfo]) -> None:
    """The bootstrap's verifier (no Bastion import) exits non-zero naming the file."""
    name = _name(layout, "wheels/pip-")
    _flip(copy, layout[name].offset_data + 999)
    import bastion.bundle.offline_verify as ov

    proc = subprocess.run([sys.executable, ov.__file__, str(copy), str(built.public_key)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 8 and name in proc.stderr


def test_the_bootstrap_refuses_a_swapped_verifier_before_running_it(built: Built, tmp_path: Path) -> None:
    """A bundle whose offline_verify.py was replaced (and re-signed by nobody) is stopped by the pins."""
    bad = tmp_path / "swapped.tar"
    _rewrite(built.created.path, bad, drop="offline_verify.py",
             add=("offline_verify.py", b"import sys; print('verified'); sys.exit(0)\n"), after="requirements.txt")
    script = tmp_path / "bootstrap.sh"
    script.write_text(built.created.bootstrap)
    proc = subprocess.run(["sh", str(script), str(bad), str(built.public_key), str(tmp_path / "pfx")],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": "/usr/bin/python3"})
    assert proc.returncode != 0
    assert "offline_verify.py differs from the digest pinned" in proc.stderr
    assert not (tmp_path / "pfx").exists()
