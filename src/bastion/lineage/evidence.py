"""Weight evidence for catalog identification: what the file's weights say about who it is.

Plugged into ``bastion.catalog.identify`` (its ``EvidenceSource`` seam): for a candidate catalog entry,
the artifact's fingerprint is compared with a stored reference of that entry (or of its declared base
model). A file's metadata can be forged; its weights are much harder to fake, so this evidence can
raise confidence above the self-declared cap, or sink a candidate whose weights do not match.
A reference is looked up by the catalog name with spaces replaced by "-" (reference names have no
spaces), e.g. ``bastion lineage add-reference Gemma-3-270M bundled:gemma3``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bastion.catalog.identify import Claims, Evidence
from bastion.catalog.schema import CatalogEntry
from bastion.lineage.check import load_or_fingerprint
from bastion.lineage.compare import compare
from bastion.lineage.fingerprint import Fingerprint
from bastion.lineage.references import ReferenceStore

#: points for the entry's own reference / its base's reference, for and against
SELF_MATCH, SELF_MISMATCH = 15, -60
BASE_MATCH, BASE_MISMATCH = 5, -40


def reference_name(catalog_name: str) -> str:
    """The reference-store name of a catalog entry."""
    return "-".join(catalog_name.split())


class WeightEvidence:
    """An ``EvidenceSource`` backed by the local reference store; fingerprints the artifact once."""

    def __init__(self, store: ReferenceStore) -> None:
        self.store = store
        self.names = {info.name for info in store.list()}
        self._fingerprints: dict[Path, Fingerprint] = {}

    def _fingerprint(self, path: Path) -> Fingerprint:
        if path not in self._fingerprints:
            self._fingerprints[path] = load_or_fingerprint(path)
        return self._fingerprints[path]

    def evidence(self, path: Path, claims: Claims, entry: CatalogEntry) -> Iterable[Evidence]:
        """Compare the weights with the entry's reference, else with its base model's."""
        for name, match, mismatch, what in (
            (entry.name, SELF_MATCH, SELF_MISMATCH, "this release"),
            (entry.base_model, BASE_MATCH, BASE_MISMATCH, "its declared base"),
        ):
            if not name or reference_name(name) not in self.names:
                continue
            result = compare(self.store.get(reference_name(name)), self._fingerprint(path))
            if result.verdict == "related":
                return [Evidence("weights", f"weights derive from the reference of {what} {name!r} "
                                 f"(log10 FPR {result.log10_p:.0f})", match)]
            if result.verdict == "not related":
                return [Evidence("weights", f"weights are NOT derived from the reference of {what} {name!r}",
                                 mismatch)]
            return [Evidence("weights", f"weights vs {name!r}: inconclusive ({result.reason})", 0)]
        return []
