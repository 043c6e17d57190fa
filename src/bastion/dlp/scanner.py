"""The scanner: every detector over one normalised view of a text, overlaps resolved, fail-closed.

A detector that raises makes the scan raise :class:`DetectorFailed` (a 503 at the gateway): a text
that could not be checked is never treated as clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from bastion.config import DlpSettings
from bastion.dlp.findings import Finding, Findings, resolve_overlaps
from bastion.dlp.identifiers import IdentifierDetector
from bastion.dlp.markings import MarkingDetector, OrgMarking
from bastion.dlp.normalise import View, normalise
from bastion.dlp.secrets import SecretDetector
from bastion.errors import DetectorFailed

#: when two values overlap, the higher category wins (a key inside a URL is a secret, not an IP)
PRIORITY = {"secret": 2, "personal": 1}
#: what is not detected, reported with every scan so nobody mistakes silence for a clean bill
NOT_DETECTED = ("person_name", "street_address")


class Detector(Protocol):
    """Anything that finds items in a normalised view (spans in the original text)."""

    name: str

    def detect(self, view: View) -> list[Finding]: ...


class Scanner:
    """Markings, personal identifiers and secrets; built once, shared by every request."""

    def __init__(
        self,
        org_markings: Iterable[OrgMarking] = (),
        phone_regions: Sequence[str] = ("US", "GB"),
        detectors: Sequence[Detector] | None = None,
    ) -> None:
        self.detectors: tuple[Detector, ...] = tuple(
            detectors
            if detectors is not None
            else (MarkingDetector(org_markings), IdentifierDetector(phone_regions), SecretDetector())
        )

    @classmethod
    def from_settings(cls, settings: DlpSettings) -> Scanner:
        """The scanner the ``[dlp]`` settings describe (organisation markings, phone regions)."""
        from bastion.policy import LEVELS

        org = [OrgMarking(m.label, LEVELS[m.level]) for m in settings.markings]
        return cls(org, settings.phone_regions)

    def scan(self, text: str) -> Findings:
        """Everything found in ``text``; DetectorFailed if any detector fails."""
        if not text:
            return Findings((), NOT_DETECTED)
        view = normalise(text)
        items: list[Finding] = []
        for detector in self.detectors:
            try:
                items.extend(detector.detect(view))
            except Exception as exc:  # noqa: BLE001  fail closed on anything a detector raises
                raise DetectorFailed(
                    f"DLP detector {detector.name!r} failed ({type(exc).__name__}); the text was not sent"
                ) from exc
        # Markings and values are resolved apart: a marking is weighed, a value is rewritten, and a
        # value inside a banner's span must still be rewritten.
        markings = [f for f in items if f.category == "marking"]
        values = resolve_overlaps([f for f in items if f.category != "marking"], PRIORITY)
        return Findings(tuple(sorted((*markings, *values), key=lambda f: (f.start, f.end))), NOT_DETECTED)


_default: Scanner | None = None


def scan(text: str) -> Findings:
    """Scan ``text`` with the default detectors (no organisation markings)."""
    global _default
    if _default is None:
        _default = Scanner()
    return _default.scan(text)
