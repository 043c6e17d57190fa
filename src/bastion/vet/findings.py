"""The plain data vet hands on: findings, per-file reports, the report and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How much a finding weighs: ``info`` never changes the verdict, ``warn`` and ``fail`` set it."""

    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


class Verdict(StrEnum):
    """The overall result: ``fail`` if any finding fails, else ``warn`` if any warns, else ``pass``."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One observation: a stable ``code``, its severity, the file, where in it, and a sentence for people."""

    code: str
    severity: Severity
    file: str
    location: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The finding as a plain mapping."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "file": self.file,
            "location": self.location,
            "message": self.message,
        }


@dataclass(frozen=True)
class FileReport:
    """One file: its format, size, digest and the metadata parsed from it."""

    path: str
    format: str
    size: int
    digest: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The file report as a plain mapping."""
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "digest": self.digest,
            "metadata": self.metadata,
        }


def verdict_of(findings: list[Finding] | tuple[Finding, ...]) -> Verdict:
    """The verdict a list of findings implies."""
    severities = {f.severity for f in findings}
    if Severity.FAIL in severities:
        return Verdict.FAIL
    if Severity.WARN in severities:
        return Verdict.WARN
    return Verdict.PASS


@dataclass(frozen=True)
class VetReport:
    """Everything ``vet_path`` learned: the verdict, findings, files and whether ``--strict`` applied."""

    root: str
    verdict: Verdict
    findings: tuple[Finding, ...]
    files: tuple[FileReport, ...]
    strict: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as one plain mapping (what ``bastion vet --json`` prints)."""
        counts = {s.value: sum(1 for f in self.findings if f.severity == s) for s in Severity}
        return {
            "path": self.root,
            "verdict": self.verdict.value,
            "strict": self.strict,
            "counts": counts,
            "findings": [f.to_json() for f in self.findings],
            "files": [f.to_json() for f in self.files],
        }
