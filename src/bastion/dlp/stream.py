"""Scan a stream of text (a model's streamed answer) with matches across chunk boundaries.

Text is scanned in windows that overlap by ``overlap`` characters, so an item cut across any number
of chunks is seen whole in some window; each item is reported once. Scanning waits until ``step``
new characters have arrived, so a token-by-token stream costs a scan per ~``step`` characters.
"""

from __future__ import annotations

from bastion.dlp.findings import Finding, Findings
from bastion.dlp.scanner import Scanner


class StreamScanner:
    """Feed pieces, then :meth:`close`; :attr:`findings` holds everything seen (spans in the stream)."""

    def __init__(self, scanner: Scanner, overlap: int = 512, step: int = 256) -> None:
        self.scanner = scanner
        self.overlap = overlap
        self.step = step
        self._text: list[str] = []
        self._length = 0
        self._scanned = 0  # stream offset up to which windows have been scanned
        self._seen: set[tuple[str, int]] = set()
        self._items: list[Finding] = []

    def feed(self, piece: str) -> list[Finding]:
        """Add ``piece``; return the findings that became visible (possibly none)."""
        self._text.append(piece)
        self._length += len(piece)
        if self._length - self._scanned < self.step:
            return []
        return self._scan(final=False)

    def close(self) -> list[Finding]:
        """Scan what is left; return the findings it adds."""
        return self._scan(final=True)

    @property
    def findings(self) -> Findings:
        return Findings(tuple(sorted(self._items, key=lambda f: f.start)))

    def _scan(self, final: bool) -> list[Finding]:
        text = "".join(self._text)
        self._text = [text]
        begin = max(0, self._scanned - self.overlap)
        window = text[begin:]
        new: list[Finding] = []
        for f in self.scanner.scan(window).items:
            start, end = f.start + begin, f.end + begin
            # An item that touches the open end may still grow; report it when the stream has moved on.
            if not final and end >= len(text) - 1:
                continue
            key = (f.type, start)
            if key in self._seen:
                continue
            self._seen.add(key)
            item = Finding(f.type, f.category, start, end, f.level, f.scheme, f.caveats)
            self._items.append(item)
            new.append(item)
        # Keep ``overlap`` characters before the open end for the next window.
        self._scanned = len(text)
        return new
