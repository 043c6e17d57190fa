"""Admission decisions above the catalog and the policy engine: attributes of a subject, one decide().

Public face: :func:`decide` (real or hypothetical), :class:`Subject`, :class:`Derivative`,
:class:`Facts`, :func:`recommend`.
"""

from bastion.admission.attributes import LINEAGE_EVIDENCE, Facts
from bastion.admission.decide import Derivative, Ruling, Subject, attributes_of, decide

__all__ = ["LINEAGE_EVIDENCE", "Derivative", "Facts", "Ruling", "Subject", "attributes_of", "decide"]
