"""Manifests of real model files: digests, layout, and agreement with model_signing and sha256sum."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import tracemalloc
from pathlib import Path

import model_signing.hashing as ms_hashing
import pytest

from bastion.bundled import minilm, smollm2
from bastion.errors import NotFound, UnusableInput, UsageError
from bastion.hashing import Manifest, compare, file_digest, manifest_of
from bastion.hashing.compute import CHUNK


def _ms_resources(manifest: object) -> dict[str, tuple[str, str]]:
    return {
        rd.identifier: (rd.digest.algorithm, rd.digest.digest_hex)
        for rd in manifest.resource_descriptors()  # type: ignore[attr-defined]
    }


def _ours(m: Manifest) -> dict[str, tuple[str, str]]:
    return {r.name: (r.algorithm, r.digest) for r in m.resources}


@pytest.fixture
def odd_folder(tmp_path: Path) -> Path:
    """A folder with sizes around shard boundaries, a nested file, an empty file and git metadata."""
    root = tmp_path / "odd"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "a.bin").write_bytes(os.urandom(3 * 4096 + 17))
    (root / "sub" / "b.bin").write_bytes(os.urandom(4096))
    (root / "sub" / "deeper" / "c.json").write_text('{"x": 1}')
    (root / "empty").write_bytes(b"")
    (root / "a").mkdir()
    (root / "a" / "z").write_bytes(b"sorted by path parts, not by string")
    return root


def test_each_file_digest_is_what_sha256sum_prints_for_the_minilm_folder() -> None:
    folder = minilm()
    m = manifest_of(folder, use_cache=False)
    names = [r.name for r in m.resources]
    assert "model.safetensors" in names and "1_Pooling/config.json" in names
    out = subprocess.run(
        ["sha256sum", *names], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out}
    assert {r.name: r.digest for r in m.resources} == expected
    assert m.total_bytes == sum((folder / n).stat().st_size for n in names)


def test_single_gguf_file_is_one_resource_named_dot_with_its_plain_sha256() -> None:
    gguf = smollm2()
    m = manifest_of(gguf, use_cache=False)
    assert [r.name for r in m.resources] == ["."]
    assert m.model_name == gguf.name
    assert m.digest_of(".") == file_digest(gguf)
    assert m.resources[0].digest == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_files_manifest_equals_model_signing_manifest_of_the_minilm_folder() -> None:
    ours = manifest_of(minilm(), use_cache=False)
    theirs = ms_hashing.Config().hash(minilm())
    assert _ours(ours) == _ms_resources(theirs)


@pytest.mark.parametrize(("hash_type", "ms_name"), [("sha256", "sha256"), ("blake2b", "blake2")])
def test_shard_manifest_has_model_signing_names_and_digests(
    odd_folder: Path, hash_type: str, ms_name: str
) -> None:
    ours = manifest_of(odd_folder, hash_type=hash_type, shard_size=4096, use_cache=False)
    theirs = (
        ms_hashing.Config()
        .use_shard_serialization(hashing_algorithm=ms_name, shard_size=4096)  # type: ignore[arg-type]
        .hash(odd_folder)
    )
    assert _ours(ours) == _ms_resources(theirs)
    assert "a.bin:12288:12305" in _ours(ours)
    assert all(r.algorithm == f"{hash_type}-sharded-4096" for r in ours.resources)


def test_blake2b_files_manifest_matches_model_signing_blake2(odd_folder: Path) -> None:
    ours = manifest_of(odd_folder, hash_type="blake2b", use_cache=False)
    theirs = ms_hashing.Config().use_file_serialization(hashing_algorithm="blake2").hash(odd_folder)
    assert _ours(ours) == _ms_resources(theirs)
    assert len(ours.resources[0].digest) == 128


def test_root_digest_is_model_signings_subject_digest(odd_folder: Path) -> None:
    from model_signing._signing.signing import Payload

    theirs = ms_hashing.Config().hash(odd_folder)
    subject = Payload(theirs).statement.pb.subject[0].digest["sha256"]
    assert manifest_of(odd_folder, use_cache=False).root_digest() == f"sha256:{subject}"


def test_git_metadata_is_ignored_and_order_follows_path_components(odd_folder: Path) -> None:
    m = manifest_of(odd_folder, use_cache=False)
    assert [r.name for r in m.resources] == ["a/z", "a.bin", "empty", "sub/b.bin", "sub/deeper/c.json"]


def test_empty_file_is_listed_by_files_method_but_has_no_shard(odd_folder: Path) -> None:
    assert "empty" in manifest_of(odd_folder, use_cache=False).files
    assert "empty" not in manifest_of(odd_folder, shard_size=4096, use_cache=False).files


def test_shard_digests_cover_the_file_exactly(odd_folder: Path) -> None:
    m = manifest_of(odd_folder, shard_size=4096, use_cache=False)
    shards = [r for r in m.resources if r.path == "a.bin"]
    assert [(r.start, r.end) for r in shards] == [(0, 4096), (4096, 8192), (8192, 12288), (12288, 12305)]
    with pytest.raises(ValueError, match="shard manifest"):
        m.digest_of("a.bin")


def test_symlink_inside_a_model_is_refused_naming_it(odd_folder: Path) -> None:
    (odd_folder / "link").symlink_to("/etc/passwd")
    with pytest.raises(UnusableInput, match="link is a symbolic link"):
        manifest_of(odd_folder, use_cache=False)


def test_fifo_inside_a_model_is_refused(odd_folder: Path) -> None:
    os.mkfifo(odd_folder / "pipe")
    with pytest.raises(UnusableInput, match="special file"):
        manifest_of(odd_folder, use_cache=False)


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        manifest_of(tmp_path / "nope", use_cache=False)


def test_unknown_algorithm_is_a_usage_error(odd_folder: Path) -> None:
    with pytest.raises(UsageError, match="md5"):
        manifest_of(odd_folder, hash_type="md5", use_cache=False)


def test_ignore_paths_cannot_escape_the_model_folder(odd_folder: Path) -> None:
    m = manifest_of(odd_folder, ignore_paths=["../odd", "/", "sub"], use_cache=False)
    assert m.files == ("a/z", "a.bin", "empty")
    assert m.ignore_paths == (".git", ".gitattributes", ".github", ".gitignore", "sub")


def test_compare_names_changed_extra_and_missing_files(odd_folder: Path) -> None:
    before = manifest_of(odd_folder, shard_size=4096, use_cache=False)
    (odd_folder / "a.bin").write_bytes(b"shorter now")  # shard layout changes with the size
    (odd_folder / "sub" / "b.bin").unlink()
    (odd_folder / "new.py").write_text("print('hi')")
    diff = compare(before, manifest_of(odd_folder, shard_size=4096, use_cache=False))
    assert diff.changed == ("a.bin",)
    assert diff.missing == ("sub/b.bin",)
    assert diff.extra == ("new.py",)
    assert "a.bin" in diff.describe() and "new.py" in diff.describe()


def test_memory_stays_bounded_while_hashing_a_98_mb_gguf(tmp_path: Path) -> None:
    gguf = smollm2()
    tracemalloc.start()
    try:
        manifest_of(gguf, shard_size=16 << 20, use_cache=False, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One reusable buffer per thread; a routine that read whole files or shards would peak >= 16 MiB.
    assert peak < 3 * CHUNK, peak


def test_sharded_hashing_uses_several_threads(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(8 * CHUNK))
    names: set[str] = set()
    lock = threading.Lock()

    def seen(_: int) -> None:
        with lock:
            names.add(threading.current_thread().name)

    manifest_of(f, shard_size=CHUNK, use_cache=False, workers=2, on_progress=seen)
    assert len([n for n in names if n.startswith("bastion-hash")]) == 2


def test_copied_model_has_the_same_root_digest(tmp_path: Path) -> None:
    copy = tmp_path / "minilm"
    shutil.copytree(minilm(), copy)
    assert (
        manifest_of(copy, use_cache=False).root_digest()
        == manifest_of(minilm(), use_cache=False).root_digest()
    )


def test_file_swapped_for_a_symlink_after_the_walk_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(2 * CHUNK))  # hashed first (largest first)
    (root / "small.json").write_text("{}")
    swapped = []

    def swap(_: int) -> None:
        if not swapped:
            (root / "small.json").unlink()
            (root / "small.json").symlink_to("/etc/hostname")
            swapped.append(True)

    with pytest.raises(UnusableInput, match=r"small\.json became a symbolic link"):
        manifest_of(root, use_cache=False, workers=1, on_progress=swap)


def test_file_replaced_by_another_after_the_walk_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(2 * CHUNK))
    (root / "small.json").write_text("{}")
    replaced = []

    def replace(_: int) -> None:
        if not replaced:
            (root / "other").write_text('{"evil": 1}')
            os.replace(root / "other", root / "small.json")
            replaced.append(True)

    with pytest.raises(UnusableInput, match=r"small\.json was replaced while being hashed"):
        manifest_of(root, use_cache=False, workers=1, on_progress=replace)
