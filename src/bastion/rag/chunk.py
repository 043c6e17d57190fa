"""Split extracted text into overlapping chunks with stable character offsets.

A chunk is ``text[start:end]`` exactly: its offsets are what citations carry, so the same text always
gives the same chunks (no randomness, no model in the loop) and a reader can check a quote by slicing
the document text. Boundaries prefer a paragraph break, then a sentence end, then a space, inside the
last third of the window, so chunks rarely cut a word or a sentence.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: characters per chunk; all-MiniLM-L6-v2 reads 256 word pieces (~1,000 characters of English), so
#: 800 leaves room for long words while keeping one idea per chunk
CHUNK_CHARS = 800
#: characters shared by consecutive chunks, so a sentence cut at a boundary is whole in one of them
OVERLAP_CHARS = 120

_SENTENCE_END = re.compile(r"[.!?;:](?=\s)")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``seq`` within its document, offsets into the document's text, and the text."""

    seq: int
    start: int
    end: int
    text: str

    @property
    def sha256(self) -> str:
        """Digest of the chunk's text (what audit entries record)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _cut(text: str, start: int, limit: int) -> int:
    """Where to end a chunk that starts at ``start`` and may run to ``limit``."""
    if limit >= len(text):
        return len(text)
    floor = start + (limit - start) * 2 // 3
    window = text[floor:limit]
    para = window.rfind("\n\n")
    if para >= 0:
        return floor + para + 2
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends:
        return floor + ends[-1]
    space = max(window.rfind(" "), window.rfind("\n"))
    if space >= 0:
        return floor + space + 1
    return limit


def chunk_text(text: str, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[Chunk]:
    """Chunks covering ``text``; whitespace-only chunks are dropped, offsets are never shifted."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size} overlap={overlap}")
    chunks: list[Chunk] = []
    start = 0
    while start < len(text):
        end = _cut(text, start, start + size)
        # Trim surrounding whitespace by moving the offsets, never by editing the text.
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            chunks.append(Chunk(len(chunks), s, e, text[s:e]))
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        # Start the overlap at a word boundary so a chunk does not open mid-word.
        space = text.find(" ", nxt, end)
        start = space + 1 if 0 <= space < end else nxt
    return chunks
