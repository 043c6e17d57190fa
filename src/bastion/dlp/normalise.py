"""A normalised view of a text for matching, with a map back to the original offsets.

Markings and identifiers are matched on a view where Unicode look-alikes are folded to ASCII (Cyrillic
"С" to "C", fullwidth "４" to "4", mathematical letters ...), invisible format characters (zero-width
space/joiners, soft hyphen, bidi controls) and combining marks are removed, and every kind of space
becomes " ". Case is left alone: patterns decide where case matters. Offsets are mapped back so
redaction rewrites exactly the original characters.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class View:
    """``text`` to match on; ``origin[i]`` is the original index of ``text[i]`` (None: identical)."""

    text: str
    origin: tuple[int, ...] | None
    original_length: int

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original ``[start, end)`` of the view's ``[start, end)``."""
        if self.origin is None:
            return start, end
        if start >= len(self.origin):
            return self.original_length, self.original_length
        return self.origin[start], self.origin[end - 1] + 1 if end > start else self.origin[start]


@lru_cache(maxsize=1)
def _confusables() -> dict[str, str]:
    """Look-alike character -> ASCII letter or digit, from Unicode's confusables (confusable_homoglyphs)."""
    raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    table: dict[str, str] = {}
    for ascii_char, entries in json.loads(raw).items():
        if len(ascii_char) == 1 and ascii_char.isascii() and ascii_char.isalnum():
            for entry in entries:
                glyph = entry["c"]
                if len(glyph) == 1 and not glyph.isascii():
                    table.setdefault(glyph, ascii_char)
    return table


@lru_cache(maxsize=65536)
def _fold(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat in ("Cf", "Mn", "Me", "Cc") and ch not in "\n\r\t":
        return ""  # zero-width and bidi controls, soft hyphen, combining marks: invisible to a reader
    if cat == "Zs" or ch in "\t\u2028\u2029\x85":
        return " "
    folded = _confusables().get(ch)
    if folded is not None:
        return folded
    nfkc = unicodedata.normalize("NFKC", ch)
    if nfkc != ch:
        return "".join(_fold(c) if not c.isascii() else c for c in nfkc)
    return ch


def normalise(text: str) -> View:
    """The matching view of ``text``; ASCII text is its own view (the common, fast case)."""
    if text.isascii():
        return View(text, None, len(text))
    parts: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            parts.append(ch)
            origin.append(i)
            continue
        folded = _fold(ch)
        parts.append(folded)
        origin.extend([i] * len(folded))
    return View("".join(parts), tuple(origin), len(text))
