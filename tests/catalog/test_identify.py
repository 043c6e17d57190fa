"""Identification of the real bundled models, and of crafted GGUF headers built at test time."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bastion import bundled
from bastion.catalog import CatalogEntry
from bastion.catalog.identify import SELF_DECLARED_CAP, Claims, Evidence, identify
from bastion.errors import UnusableInput
from bastion.formats import Artifact, open_artifact
from bastion.formats.gguf import read_gguf


def test_bundled_smollm2_gguf_is_identified_as_the_instruct_release() -> None:
    result = identify(open_artifact(bundled.smollm2()))
    assert result.best is not None
    assert result.best.name == "SmolLM2-135M-Instruct"
    assert result.best.confidence == SELF_DECLARED_CAP
    kinds = {e.kind for e in result.best.evidence if e.points > 0}
    assert {"name", "architecture", "tokenizer", "chat-template"} <= kinds
    # The base model is a candidate too, but ranked below: the file has a chat template.
    assert result.candidates[1].name == "SmolLM2-135M"
    assert result.candidates[1].confidence < result.best.confidence


def test_bundled_gemma3_gguf_is_identified_as_the_base_model(gemma3_gguf: Path) -> None:
    result = identify(open_artifact(gemma3_gguf))
    assert result.best is not None and result.best.name == "Gemma 3 270M"
    assert result.claims.has_chat_template is False
    assert result.claims.architecture == "gemma3"
    assert result.candidates[1].name == "Gemma 3 270M IT"


def test_bundled_minilm_folder_is_identified_despite_naming_its_base_in_config() -> None:
    result = identify(open_artifact(bundled.minilm()))
    assert result.best is not None and result.best.name == "all-MiniLM-L6-v2"
    assert ("config.json _name_or_path", "nreimers/MiniLM-L6-H384-uncased") in result.claims.names
    assert any(e.kind == "lineage" for e in result.best.evidence)
    assert result.claims.params_b is not None and 0.02 < result.claims.params_b < 0.025


def test_gguf_header_reader_keeps_general_keys_and_digests_the_vocabulary() -> None:
    header = read_gguf(bundled.smollm2())
    assert header.metadata["general.architecture"] == "llama"
    assert header.metadata["general.size_label"] == "135M"
    assert len(header.tensors) == 272
    assert len(header.metadata["tokenizer.ggml.tokens"].sha256) == 64


def test_crafted_gguf_claiming_a_llama_distill_is_matched_with_architecture(
    tmp_path: Path, gguf_writer: Any
) -> None:
    path = gguf_writer(
        tmp_path / "m.gguf",
        {
            "general.architecture": "llama",
            "general.name": "DeepSeek-R1-Distill-Llama-8B",
            "general.size_label": "8B",
            "tokenizer.chat_template": "{{ x }}",
        },
    )
    best = identify(open_artifact(path)).best
    assert best is not None and best.name == "DeepSeek-R1-Distill-Llama-8B"


def test_architecture_contradicting_the_claimed_name_lowers_confidence(
    tmp_path: Path, gguf_writer: Any
) -> None:
    honest = gguf_writer(tmp_path / "a.gguf", {"general.architecture": "qwen2", "general.name": "Qwen2.5-7B"})
    liar = gguf_writer(tmp_path / "b.gguf", {"general.architecture": "llama", "general.name": "Qwen2.5-7B"})
    a, b = identify(open_artifact(honest)).best, identify(open_artifact(liar)).best
    assert a is not None and b is not None and b.confidence < a.confidence - 40


def test_unknown_name_gives_no_candidate(tmp_path: Path, gguf_writer: Any) -> None:
    path = gguf_writer(
        tmp_path / "m.gguf", {"general.architecture": "llama", "general.name": "Totally Domestic 7B"}
    )
    assert identify(open_artifact(path)).best is None


class _WeightsSay:
    """A stand-in for lineage's weight evidence: outside this package, so a fake is allowed here."""

    def evidence(self, artifact: Artifact, claims: Claims, entry: CatalogEntry) -> Iterable[Evidence]:
        yield Evidence("weights", "fingerprint matches", 10 if entry.name == "SmolLM2-135M-Instruct" else -50)


def test_weight_evidence_seam_can_raise_confidence_above_the_self_declared_cap() -> None:
    result = identify(open_artifact(bundled.smollm2()), evidence_sources=[_WeightsSay()])
    assert result.best is not None and result.best.confidence == 100
    assert result.candidates[1].confidence < 50


def test_truncated_gguf_is_unusable_input_naming_the_file(tmp_path: Path, gguf_writer: Any) -> None:
    path = tmp_path / "t.gguf"
    path.write_bytes(bundled.smollm2().read_bytes()[:5000])
    with pytest.raises(UnusableInput, match=r"t\.gguf.*(truncated|cannot fit|past the end)"):
        identify(open_artifact(path))


def test_absurd_array_length_is_refused_before_allocating(tmp_path: Path, gguf_writer: Any) -> None:
    bad = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", 3)
        + b"key"
        + struct.pack("<IIQ", 9, 8, 2**40)
    )
    (tmp_path / "x.gguf").write_bytes(bad)
    with pytest.raises(UnusableInput, match="cannot fit|runs past|past the end|remain"):
        read_gguf(tmp_path / "x.gguf")


def test_absurd_key_count_is_refused(tmp_path: Path, gguf_writer: Any) -> None:
    path = gguf_writer(tmp_path / "x.gguf", {}, kv_count=10**9)
    with pytest.raises(UnusableInput, match="metadata count"):
        read_gguf(path)


def test_file_that_is_neither_gguf_nor_folder_is_refused(tmp_path: Path, gguf_writer: Any) -> None:
    (tmp_path / "w.bin").write_bytes(b"\x80\x04junk")
    with pytest.raises(UnusableInput, match="neither"):
        identify(open_artifact(tmp_path / "w.bin"))
