"""Several texts scanned as one document, so nothing escapes by being split across messages.

The texts of a request (every message, tool argument, prompt or input) are joined with newlines and
scanned once; then joined with nothing and scanned again for what only appears across a boundary
("TOP SEC" + "RET//NOFORN", a card number cut in two). Findings keep spans in the newline-joined
document; :meth:`Document.pieces` maps a span back to the texts it touches.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.dlp.findings import Finding, Findings, resolve_overlaps
from bastion.dlp.scanner import PRIORITY, Scanner


@dataclass(frozen=True)
class Document:
    """The texts, and where each starts in the newline-joined document."""

    texts: tuple[str, ...]
    starts: tuple[int, ...]

    @classmethod
    def of(cls, texts: list[str] | tuple[str, ...]) -> Document:
        starts, pos = [], 0
        for t in texts:
            starts.append(pos)
            pos += len(t) + 1
        return cls(tuple(texts), tuple(starts))

    @property
    def joined(self) -> str:
        return "\n".join(self.texts)

    def pieces(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """``(text index, start, end)`` of each part of document span ``[start, end)``."""
        out = []
        for i, (t, s) in enumerate(zip(self.texts, self.starts, strict=True)):
            a, b = max(start, s), min(end, s + len(t))
            if a < b:
                out.append((i, a - s, b - s))
        return out


def scan_document(scanner: Scanner, doc: Document) -> Findings:
    """Findings of every text, including those that only appear across a boundary between texts."""
    found = scanner.scan(doc.joined)
    if len(doc.texts) < 2:
        return found
    tight = "".join(doc.texts)
    if not tight:
        return found
    # Offsets in the tight join shift by one per boundary crossed in the newline join.
    ends = []
    pos = 0
    for t in doc.texts:
        pos += len(t)
        ends.append(pos)

    def to_doc(offset: int, is_end: bool) -> int:
        crossed = sum(1 for e in ends[:-1] if (e < offset if is_end else e <= offset))
        return offset + crossed

    extra: list[Finding] = []
    for f in scanner.scan(tight).items:
        if not any(f.start < e < f.end for e in ends[:-1]):
            continue  # inside one text: the first scan saw it
        g = Finding(
            f.type, f.category, to_doc(f.start, False), to_doc(f.end, True), f.level, f.scheme, f.caveats
        )
        # A marking counts whatever it overlaps (markings are not rewritten, only weighed); a value
        # only fills a gap, so that gluing two texts never swallows what the first scan found whole.
        if g.category == "marking" or all(g.end <= k.start or g.start >= k.end for k in found.items):
            extra.append(g)
    if not extra:
        return found
    values = [f for f in (*found.items, *extra) if f.category != "marking"]
    markings = [f for f in (*found.items, *extra) if f.category == "marking"]
    kept = resolve_overlaps(values, PRIORITY)
    return Findings(tuple(sorted((*kept, *markings), key=lambda f: (f.start, f.end))), found.skipped)
