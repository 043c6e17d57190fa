"""open_artifact: one read of a model file or folder, headers parsed, every byte hashed once."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scripts.crafted import sharded_copy

from bastion import bundled
from bastion.embeddings import MiniLMEmbedder
from bastion.errors import UnusableInput
from bastion.formats import Artifact, GGUFInfo, SafetensorsInfo, open_artifact
from bastion.vet import vet_artifact, vet_path

SMOL = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _rchar() -> int:
    """Bytes this process has read through read(2) so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_gguf_is_read_once_header_metadata_and_digest(tmp_path: Path) -> None:
    copy = tmp_path / "smol.gguf"
    shutil.copyfile(bundled.smollm2(), copy)
    size = copy.stat().st_size
    before = _rchar()
    artifact = open_artifact(copy, use_cache=False)
    read = _rchar() - before
    # every byte hashed once; the header (vocabulary included) is a few MB on top, not a second pass
    assert size <= read < size * 1.2
    assert not artifact.is_folder and artifact.weights_digest() == SMOL
    info = artifact.gguf
    assert isinstance(info, GGUFInfo) and info.metadata["general.architecture"] == "llama"
    assert len(info.arrays["tokenizer.ggml.tokens"]) == 49152  # kept whole for lineage
    assert artifact.manifest.digest_of(".") == SMOL


def test_vet_on_the_artifact_matches_vet_on_the_path_and_reuses_the_digests() -> None:
    artifact = open_artifact(bundled.smollm2())
    by_artifact, by_path = vet_artifact(artifact), vet_path(bundled.smollm2())
    assert by_artifact.verdict == by_path.verdict
    assert [f.code for f in by_artifact.findings] == [f.code for f in by_path.findings]
    assert [r.digest for r in by_artifact.files] == [SMOL]


def test_a_folder_keeps_its_json_and_safetensors_headers() -> None:
    artifact = open_artifact(bundled.minilm())
    assert artifact.is_folder
    config = artifact.json("config.json")
    assert config is not None and config["model_type"] == "bert"
    (weights,) = artifact.weight_files()
    assert weights.name == "model.safetensors" and isinstance(weights.parsed, SafetensorsInfo)
    digest = hashlib.sha256((bundled.minilm() / "model.safetensors").read_bytes()).hexdigest()
    assert artifact.weights_digest() == f"sha256:{digest}"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharded_copy(bundled.minilm(), tmp_path_factory.mktemp("sharded") / "minilm")


def test_a_sharded_folder_names_its_shards_and_has_one_weights_digest(sharded: Path) -> None:
    artifact = open_artifact(sharded)
    names = [f.name for f in artifact.weight_files()]
    assert names == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    digest = artifact.weights_digest()
    assert digest.startswith("sha256-folder:")
    assert vet_artifact(artifact).verdict.value == "pass"


def test_the_minilm_backend_serves_a_sharded_folder_with_the_same_vectors(sharded: Path) -> None:
    whole = MiniLMEmbedder.load(bundled.minilm())
    split = MiniLMEmbedder.load(sharded)
    texts = ["a sovereign model gateway", "the bytes vetted are the bytes signed"]
    np.testing.assert_allclose(split.embed(texts).vectors, whole.embed(texts).vectors, atol=1e-6)
    assert split.digest == open_artifact(sharded).weights_digest()


def test_a_shard_index_naming_a_missing_shard_is_a_clear_error(sharded: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(sharded, tmp_path / "broken")
    (broken / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UnusableInput, match=r"names model-00002-of-00002\.safetensors, which the folder"):
        open_artifact(broken).weights_digest()


def test_a_shard_index_pointing_outside_the_folder_is_refused(sharded: Path, tmp_path: Path) -> None:
    evil = shutil.copytree(sharded, tmp_path / "evil")
    index = json.loads((evil / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../elsewhere/model.safetensors"
    (evil / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UnusableInput, match="not a .safetensors file beside the index"):
        open_artifact(evil).weight_files()


def test_a_file_changed_after_the_read_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "smol.gguf"
    shutil.copyfile(bundled.smollm2(), copy)
    artifact = open_artifact(copy)
    artifact.check_unchanged()
    with copy.open("r+b") as fh:
        fh.seek(50_000_000)
        fh.write(b"\0")
    with pytest.raises(UnusableInput, match=r"changed after it was read and hashed \(changed: \.\)"):
        artifact.check_unchanged()


def test_a_file_added_to_a_folder_after_the_read_is_caught(tmp_path: Path) -> None:
    folder = shutil.copytree(bundled.minilm(), tmp_path / "m")
    artifact: Artifact = open_artifact(folder)
    (folder / "extra.py").write_text("import os\n")
    with pytest.raises(UnusableInput, match=r"added: extra\.py"):
        artifact.check_unchanged()


def test_a_malformed_header_is_kept_for_vet_to_report(tmp_path: Path) -> None:
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(bundled.smollm2().read_bytes()[:5000])
    artifact = open_artifact(bad)
    assert artifact.files[0].error is not None
    report = vet_artifact(artifact)
    assert report.verdict.value == "fail" and report.findings[0].code == "STRUCTURE_INVALID"
    with pytest.raises(UnusableInput, match="malformed GGUF"):
        _ = artifact.gguf
