"""A CycloneDX 1.6 SBOM of everything in a bundle, built with ``cyclonedx-python-lib``.

Each wheel is a ``library`` with its PyPI purl and SHA-256; each model a ``machine-learning-model``
whose files are child ``file`` components; eval data, lineage references, the catalog and the Debian
packages the wheels need are ``data`` components (Debian ones with a ``pkg:deb`` purl). The SBOM is
itself a file of the bundle, so the signed manifest covers it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from packageurl import PackageURL

from bastion import __version__
from bastion.bundle.debian import DebianNeed
from bastion.bundle.wheelhouse import Wheel

FILE = "sbom.cdx.json"


def _sha(hexdigest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)


def build_sbom(
    wheels: list[Wheel],
    models: list[dict[str, Any]],
    data_files: dict[str, str],
    debian: list[DebianNeed],
) -> dict[str, Any]:
    """The SBOM as a CycloneDX 1.6 JSON mapping.

    ``models``: ``{"name", "files": {path: sha256}}`` each; ``data_files``: other files by path.
    """
    comps: list[Component] = [
        Component(
            name=w.name,
            version=w.version,
            type=ComponentType.LIBRARY,
            bom_ref=f"wheel:{w.file}",
            purl=PackageURL("pypi", name=w.name, version=w.version, qualifiers={"file_name": w.file}),
            hashes=[_sha(w.sha256)],
        )
        for w in wheels
    ]
    for m in models:
        files = [
            Component(name=p, type=ComponentType.FILE, bom_ref=f"file:{p}", hashes=[_sha(d)])
            for p, d in sorted(m["files"].items())
        ]
        comps.append(
            Component(
                name=m["name"],
                type=ComponentType.MACHINE_LEARNING_MODEL,
                bom_ref=f"model:{m['name']}",
                components=files,
                properties=[Property(name="bastion:model:root_digest", value=m["root_digest"])],
            )
        )
    for path, digest in sorted(data_files.items()):
        comps.append(
            Component(name=path, type=ComponentType.DATA, bom_ref=f"data:{path}", hashes=[_sha(digest)])
        )
    for n in debian:
        comps.append(
            Component(
                name=n.package,
                version=n.version or None,
                type=ComponentType.LIBRARY,
                bom_ref=f"deb:{n.package}",
                purl=PackageURL("deb", namespace="debian", name=n.package, version=n.version or None),
                properties=[Property(name="bastion:bundle:provided-by", value="system (not in the bundle)")],
            )
        )
    from cyclonedx.output.json import JsonV1Dot6

    doc: dict[str, Any] = json.loads(JsonV1Dot6(Bom(components=comps)).output_as_string())
    doc["metadata"]["tools"] = {
        "components": [{"type": "application", "name": "bastion", "version": __version__}]
    }
    doc["metadata"]["component"] = {"type": "application", "name": "bastion-bundle", "version": __version__,
                                    "bom-ref": "bundle"}
    return doc


def write_sbom(doc: dict[str, Any], path: Path) -> None:
    """Write the SBOM with sorted keys, so the same contents give the same bytes."""
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
