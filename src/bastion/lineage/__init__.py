"""Lineage: prove or refute "this model is derived from base X" from its weights.

Public face:
  * :func:`fingerprint` / :func:`save` / :func:`load`: compact weight + tokenizer fingerprints
  * :func:`compare`: related / not related / inconclusive, with a calibrated false-positive rate
  * :func:`check_lineage`: a model against its claimed base and every stored reference
  * :class:`ReferenceStore`: the local store of named reference fingerprints
"""

from bastion.lineage.check import LineageVerdict, check_lineage, load_or_fingerprint
from bastion.lineage.compare import Comparison, compare
from bastion.lineage.evidence import WeightEvidence, local_weight_evidence
from bastion.lineage.fingerprint import Fingerprint, fingerprint, load, save
from bastion.lineage.references import ReferenceInfo, ReferenceStore
from bastion.lineage.shipped import reference_name, shipped_dir

__all__ = [
    "Comparison",
    "Fingerprint",
    "LineageVerdict",
    "ReferenceInfo",
    "ReferenceStore",
    "WeightEvidence",
    "check_lineage",
    "compare",
    "fingerprint",
    "load",
    "load_or_fingerprint",
    "local_weight_evidence",
    "reference_name",
    "save",
    "shipped_dir",
]
