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

from bastion.catalog.identify import Claims, Evidence
from bastion.catalog.schema import CatalogEntry
from bastion.formats import Artifact
from bastion.lineage.check import load_or_fingerprint
from bastion.lineage.compare import compare
from bastion.lineage.fingerprint import Fingerprint
from bastion.lineage.references import ReferenceStore
from bastion.lineage.shipped import reference_name

#: points for the entry's own reference / its base's reference, for and against
SELF_MATCH, SELF_MISMATCH = 15, -60
BASE_MATCH, BASE_MISMATCH = 5, -40


class WeightEvidence:
    """An ``EvidenceSource`` backed by the local reference store; fingerprints the artifact once."""

    def __init__(self, store: ReferenceStore) -> None:
        self.store = store
        self.names = {info.name for info in store.list()}
        self._fingerprints: dict[str, Fingerprint] = {}

    def _fingerprint(self, artifact: Artifact) -> Fingerprint:
        key = artifact.manifest.root_digest()  # the same bytes are fingerprinted once
        if key not in self._fingerprints:
            self._fingerprints[key] = load_or_fingerprint(artifact)
        return self._fingerprints[key]

    def evidence(self, artifact: Artifact, claims: Claims, entry: CatalogEntry) -> Iterable[Evidence]:
        """Compare the weights with the entry's reference, else with its base model's."""
        for name, match, mismatch, what in (
            (entry.name, SELF_MATCH, SELF_MISMATCH, "this release"),
            (entry.base_model, BASE_MATCH, BASE_MISMATCH, "its declared base"),
        ):
            if not name or reference_name(name) not in self.names:
                continue
            result = compare(self.store.get(reference_name(name)), self._fingerprint(artifact))
            if result.verdict == "related":
                return [Evidence("weights", f"weights derive from the reference of {what} {name!r} "
                                 f"(log10 FPR {result.log10_p:.0f})", match)]
            if result.verdict == "not related":
                return [Evidence("weights", f"weights are NOT derived from the reference of {what} {name!r}",
                                 mismatch)]
            return [Evidence("weights", f"weights vs {name!r}: inconclusive ({result.reason})", 0)]
        return []


def local_weight_evidence(store: ReferenceStore | None = None) -> list[WeightEvidence]:
    """Weight fingerprints as identification evidence, when the reference store has any references.

    ``store`` defaults to the local store (``$BASTION_HOME/lineage.db``); none is created if absent.
    """
    if store is None:
        store = ReferenceStore.default()
    return [WeightEvidence(store)] if store.list() else []
