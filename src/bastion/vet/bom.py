"""CycloneDX 1.6 AI-BOM for a vetted model, built with ``cyclonedx-python-lib``.

The model is one ``machine-learning-model`` component: its files are child ``file`` components with
their SHA-256 digests; licence, supplier and model-card facts (architecture, parameters, quantisation,
context length, chat-template digest) are read from the artifact itself, never from a hub; the vet
verdict and every finding are ``bastion:vet:*`` properties. The library has no ``modelCard`` support,
so the ``modelCard`` object is added to the serialised JSON, which the tests validate against the
CycloneDX 1.6 schema.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot6

from bastion import __version__
from bastion.errors import UnusableInput
from bastion.vet.findings import VetReport

_WEIGHTS = {"gguf", "safetensors", "torch-zip", "pickle", "npy", "npz"}


@dataclass(frozen=True)
class ModelCard:
    """Model-card facts gathered from every file of a vet report."""

    name: str
    architecture_family: str | None = None
    architecture: str | None = None
    supplier: str | None = None
    license: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The card as a plain mapping."""
        return dict(self.__dict__)


def model_card(report: VetReport) -> ModelCard:
    """Merge the model-card fields of a report's files (GGUF metadata, config.json, safetensors)."""
    root = Path(report.root)
    fields: dict[str, Any] = {"name": root.stem if root.is_file() else root.name}
    params = 0
    dtypes: set[str] = set()
    for f in report.files:
        m = f.metadata
        if f.format == "gguf":
            card = m.get("card", {})
            fields.update(
                {
                    k: v
                    for k, v in {
                        "name": card.get("name"),
                        "architecture_family": card.get("architecture"),
                        "architecture": card.get("architecture"),
                        "supplier": card.get("organization"),
                        "license": card.get("license"),
                        "quantization": card.get("quantization"),
                        "context_length": card.get("context_length"),
                        "chat_template_sha256": card.get("chat_template_sha256"),
                    }.items()
                    if v
                }
            )
            params += int(card.get("parameters") or 0)
        elif f.format == "hf-config":
            archs = m.get("architectures") or []
            fields.setdefault("architecture_family", m.get("model_type"))
            fields.setdefault("architecture", archs[0] if archs else None)
            fields.setdefault("context_length", m.get("context_length"))
            if m.get("license"):
                fields.setdefault("license", m.get("license"))
        elif f.format == "other" and m.get("license"):
            fields.setdefault("license", m["license"])
        elif f.format == "safetensors":
            params += int(m.get("parameters") or 0)
            dtypes |= set(m.get("tensor_dtypes") or {})
        elif f.format == "hf-tokenizer-config":
            digests = m.get("chat_template_sha256") or {}
            if digests:
                fields.setdefault("chat_template_sha256", next(iter(digests.values())))
    if params:
        fields["parameters"] = params
    if dtypes and not fields.get("quantization"):
        fields["quantization"] = "+".join(sorted(dtypes))
    return ModelCard(**{k: v for k, v in fields.items() if v is not None})


def build_bom(report: VetReport) -> dict[str, Any]:
    """The AI-BOM for ``report`` as a CycloneDX 1.6 JSON mapping."""
    card = model_card(report)
    lf = LicenseFactory()
    files = [
        Component(
            name=f.path,
            type=ComponentType.FILE,
            bom_ref=f"file:{f.path}",
            hashes=[_hash(f.digest)] if f.digest else None,
        )
        for f in report.files
    ]
    weights = [f for f in report.files if f.format in _WEIGHTS and f.digest]
    props = [
        Property(name="bastion:vet:verdict", value=report.verdict.value),
        Property(name="bastion:vet:strict", value=str(report.strict).lower()),
    ]
    props += [
        Property(
            name="bastion:vet:finding",
            value=f"{x.severity.value} {x.code} {x.file} {x.location}: {x.message}".strip(),
        )
        for x in report.findings
    ]
    props += [
        Property(name=f"bastion:model:{k}", value=str(v))
        for k, v in card.to_json().items()
        if v is not None and k != "name"
    ]
    model = Component(
        name=card.name,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref="model",
        supplier=OrganizationalEntity(name=card.supplier) if card.supplier else None,
        licenses=[lf.make_from_string(card.license)] if card.license else None,
        hashes=[_hash(weights[0].digest)] if len(weights) == 1 and weights[0].digest else None,
        properties=props,
        components=files,
    )
    bom = Bom(components=[model])
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["tools"] = {
        "components": [{"type": "application", "name": "bastion", "version": __version__}]
    }
    for comp in doc.get("components", []):
        if comp.get("bom-ref") == "model":
            comp["modelCard"] = _model_card_json(card)
    return doc


def _hash(digest: str) -> HashType:
    alg, _, hexd = digest.partition(":")
    if alg != "sha256":
        raise UnusableInput(f"unsupported digest algorithm {alg!r} for the AI-BOM", hint="Use sha256.")
    return HashType(alg=HashAlgorithm.SHA_256, content=hexd)


def _model_card_json(card: ModelCard) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if card.architecture_family:
        params["architectureFamily"] = card.architecture_family
    if card.architecture:
        params["modelArchitecture"] = card.architecture
    props = [
        {"name": f"bastion:model:{k}", "value": str(v)}
        for k, v in card.to_json().items()
        if k in ("parameters", "quantization", "context_length", "chat_template_sha256") and v is not None
    ]
    out: dict[str, Any] = {"modelParameters": params}
    if props:
        out["properties"] = props
    return out


def write_bom(report: VetReport, out: Path) -> dict[str, Any]:
    """Write the AI-BOM to ``out`` atomically (temp file + rename) and return it."""
    doc = build_bom(report)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise UnusableInput(
            f"cannot write {out}: {exc.strerror or exc}", hint="Check the output folder."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return doc
