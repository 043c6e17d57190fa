"""The AI-BOM validates against the CycloneDX 1.6 JSON schema (offline) and carries the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from bastion import bundled
from bastion.vet import build_bom, vet_path, write_bom
from tests.vet.corpus import Case


def _valid(doc: dict[str, object]) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    assert error is None, error


def _model(doc: dict[str, object]) -> dict[str, object]:
    comps = doc["components"]
    assert isinstance(comps, list)
    return next(c for c in comps if c["type"] == "machine-learning-model")


def _props(comp: dict[str, object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in comp["properties"]:  # type: ignore[attr-defined]
        out.setdefault(p["name"], []).append(p["value"])
    return out


def test_smollm2_bom_is_valid_cyclonedx_16_with_card_fields(tmp_path: Path) -> None:
    out = tmp_path / "bom.json"
    write_bom(vet_path(bundled.smollm2()), out)
    doc = json.loads(out.read_text())
    _valid(doc)
    assert doc["specVersion"] == "1.6"
    model = _model(doc)
    assert model["hashes"] == [
        {"alg": "SHA-256", "content": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"}
    ]
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["supplier"] == {"name": "HuggingFaceTB"}
    assert model["modelCard"]["modelParameters"]["modelArchitecture"] == "llama"
    props = _props(model)
    assert props["bastion:vet:verdict"] == ["pass"]
    assert props["bastion:model:quantization"] == ["Q4_1"]
    assert props["bastion:model:parameters"] == ["134515008"]
    assert props["bastion:model:context_length"] == ["8192"]
    assert props["bastion:model:chat_template_sha256"][0].startswith("sha256:")


def test_minilm_folder_bom_lists_every_file_with_its_hash() -> None:
    doc = build_bom(vet_path(bundled.minilm()))
    _valid(doc)
    model = _model(doc)
    files = {c["name"]: c for c in model["components"]}  # type: ignore[attr-defined]
    assert "model.safetensors" in files and "config.json" in files
    assert all(c["hashes"][0]["alg"] == "SHA-256" for c in files.values())
    assert model["modelCard"]["modelParameters"]["architectureFamily"] == "bert"
    assert _props(model)["bastion:model:parameters"] == ["22713728"]


@pytest.mark.parametrize("name", ["exec_reduce.pkl", "gguf_gated.gguf"])
def test_failing_artifact_bom_records_verdict_and_findings(corpus: dict[str, Case], name: str) -> None:
    doc = build_bom(vet_path(corpus[name].path))
    _valid(doc)
    props = _props(_model(doc))
    assert props["bastion:vet:verdict"] == ["fail"]
    assert any(v.startswith("fail ") for v in props["bastion:vet:finding"])


def test_bom_write_leaves_no_partial_file_when_the_folder_is_missing(tmp_path: Path) -> None:
    from bastion.errors import UnusableInput

    with pytest.raises(UnusableInput):
        write_bom(vet_path(bundled.smollm2(), digests=True), tmp_path / "missing" / "bom.json")
    assert not (tmp_path / "missing").exists()


GOLDEN = Path(__file__).with_name("golden") / "smollm2.cdx.json"


def _stable(doc: dict[str, object]) -> dict[str, object]:
    """The BOM without the fields that change on every run (serial number, timestamp, tool version)."""
    doc = json.loads(json.dumps(doc))
    doc.pop("serialNumber", None)
    meta = doc["metadata"]
    assert isinstance(meta, dict)
    meta.pop("timestamp", None)
    meta.pop("tools", None)
    return doc


def test_smollm2_bom_matches_the_golden_file() -> None:
    # AI-BOMs are stored by others: a change to their shape must be deliberate. Regenerate with
    # BASTION_UPDATE_GOLDEN=1 and review the diff.
    import os

    doc = _stable(build_bom(vet_path(bundled.smollm2())))
    if os.environ.get("BASTION_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert doc == json.loads(GOLDEN.read_text())
