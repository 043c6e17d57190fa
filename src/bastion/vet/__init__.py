"""Vet model artifacts: read them without executing anything, find hidden code, give one verdict.

Public face for other capabilities (the admission pipeline, the catalog matcher)::

    from bastion.vet import vet_path, VetReport, Finding
    report = vet_path(path, strict=False)   # report.verdict, .findings, .files[i].metadata
"""

from bastion.vet.bom import ModelCard, build_bom, model_card, write_bom
from bastion.vet.findings import FileReport, Finding, Severity, Verdict, VetReport, verdict_of
from bastion.vet.scan import vet_artifact, vet_path

__all__ = [
    "FileReport",
    "Finding",
    "ModelCard",
    "Severity",
    "Verdict",
    "VetReport",
    "build_bom",
    "model_card",
    "verdict_of",
    "vet_artifact",
    "vet_path",
    "write_bom",
]
