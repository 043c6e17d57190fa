"""Data-loss prevention: classification markings, personal data and secrets, found and rewritten.

Public face: ``scan(text) -> Findings``, :class:`Scanner` (configured once: organisation markings,
phone regions), :class:`StreamScanner` (answers, across chunk boundaries), :class:`Pseudonymiser`
(consistent placeholders, restored in answers, streamed ones included), and the request helpers
``texts``/``rewrite``/``Document``/``scan_document``.
"""

from bastion.dlp.document import Document, scan_document
from bastion.dlp.findings import CATEGORIES, Finding, Findings
from bastion.dlp.markings import OrgMarking
from bastion.dlp.pseudonymise import Mode, Pseudonymiser, StreamRestorer
from bastion.dlp.request import rewrite, texts
from bastion.dlp.scanner import NOT_DETECTED, Scanner, scan
from bastion.dlp.stream import StreamScanner
from bastion.errors import DataLossBlocked, DetectorFailed

__all__ = [
    "CATEGORIES",
    "NOT_DETECTED",
    "DataLossBlocked",
    "DetectorFailed",
    "Document",
    "Finding",
    "Findings",
    "Mode",
    "OrgMarking",
    "Pseudonymiser",
    "Scanner",
    "StreamRestorer",
    "StreamScanner",
    "rewrite",
    "scan",
    "scan_document",
    "texts",
]
