"""The plain data the detectors hand on: a finding (type, category, span), and the findings of a text.

A finding never carries the matched value in its JSON form: what leaves the scanner (audit entries,
Cedar context, ``--json`` output) is types, counts and positions. The value is read back from the
scanned text by whoever holds it (the pseudonymiser), and only in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Category = Literal["marking", "personal", "secret"]
CATEGORIES: tuple[Category, ...] = ("marking", "personal", "secret")


@dataclass(frozen=True)
class Finding:
    """One detected item: its ``type`` (e.g. ``email``, ``aws_access_key``), category and span.

    ``start``/``end`` index the *original* text (normalisation is undone). For markings, ``level`` is
    the classification on Bastion's scale (0 public ... 3 top secret) and ``caveats`` the handling
    caveats read with it (NOFORN, UK EYES ONLY ...).
    """

    type: str
    category: Category
    start: int
    end: int
    level: int = -1
    scheme: str = ""
    caveats: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The finding without its value."""
        out: dict[str, Any] = {
            "type": self.type,
            "category": self.category,
            "start": self.start,
            "end": self.end,
        }
        if self.category == "marking":
            out.update(level=self.level, scheme=self.scheme, caveats=list(self.caveats))
        return out


@dataclass(frozen=True)
class Findings:
    """Everything found in one text (or one request), in order of position, overlaps resolved."""

    items: tuple[Finding, ...] = ()
    #: detectors that were not run (e.g. names, when no NER model is installed): reported, not hidden
    skipped: tuple[str, ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        """Number of findings per type."""
        return dict(sorted(Counter(f.type for f in self.items).items()))

    def category_counts(self) -> dict[str, int]:
        """Number of findings per category (every category present, 0 when none)."""
        c = Counter(f.category for f in self.items)
        return {cat: c.get(cat, 0) for cat in CATEGORIES}

    @property
    def marking_level(self) -> int:
        """The highest classification marked (-1 when no marking was found)."""
        return max((f.level for f in self.items if f.category == "marking"), default=-1)

    @property
    def caveats(self) -> tuple[str, ...]:
        """Every handling caveat read with a marking, sorted."""
        return tuple(sorted({c for f in self.items for c in f.caveats}))

    def summary(self) -> dict[str, Any]:
        """Types, counts, highest marking and caveats: what audit entries and Cedar see (no values)."""
        return {
            "counts": self.counts(),
            "categories": self.category_counts(),
            "marking_level": self.marking_level,
            "caveats": list(self.caveats),
        }

    def to_json(self) -> dict[str, Any]:
        """Summary plus every finding's type and span."""
        return {
            **self.summary(),
            "findings": [f.to_json() for f in self.items],
            "skipped": list(self.skipped),
        }

    def merge(self, other: Findings) -> Findings:
        """Both sets of findings (spans refer to their own texts: use for counting, not for rewriting)."""
        return Findings(self.items + other.items, tuple(sorted(set(self.skipped) | set(other.skipped))))


def resolve_overlaps(items: list[Finding], priority: dict[str, int]) -> tuple[Finding, ...]:
    """Keep one finding per overlapping group: the higher-priority category/type, then the longer span.

    A card number also parses as a phone number; the validated, more specific reading wins.
    """
    ranked = sorted(items, key=lambda f: (-priority.get(f.category, 0), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return tuple(sorted(kept, key=lambda f: (f.start, f.end)))
