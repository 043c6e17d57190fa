"""Rewrite what was found: consistent placeholders restored in the answer, or plain redaction.

``[EMAIL_1]`` stands for the first e-mail address of the request wherever it appears (same value, same
placeholder, across every message), so the model can still reason about "who wrote to whom". The map
lives only in the gateway's memory for the request; placeholders in the answer, streamed ones included,
are turned back into the values before the client sees them. Redaction (``[REDACTED_EMAIL]``) is
not reversible. Markings are never rewritten: a marking is either allowed to go or the request is
blocked.
"""

from __future__ import annotations

import re
from typing import Literal

from bastion.dlp.document import Document
from bastion.dlp.findings import Findings

Mode = Literal["pseudonymise", "redact"]
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*?)_(\d+)\]")
_PARTIAL = re.compile(r"\[[A-Z0-9_]*$")
_MAX_PLACEHOLDER = 48


class Pseudonymiser:
    """One request's value <-> placeholder map."""

    def __init__(self, mode: Mode = "pseudonymise") -> None:
        self.mode = mode
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder for ``value`` of type ``kind`` (the same one every time in this request)."""
        label = kind.upper()
        if self.mode == "redact":
            return f"[REDACTED_{label}]"
        key = (kind, value)
        hit = self._by_value.get(key)
        if hit is None:
            n = self._counts.get(label, 0) + 1
            self._counts[label] = n
            hit = f"[{label}_{n}]"
            self._by_value[key] = hit
            self._by_placeholder[hit] = value
        return hit

    def apply(self, doc: Document, findings: Findings) -> list[str]:
        """The texts with every personal and secret finding replaced (markings are left alone)."""
        texts = list(doc.texts)
        edits: dict[int, list[tuple[int, int, str]]] = {}
        for f in findings.items:
            if f.category == "marking":
                continue
            pieces = doc.pieces(f.start, f.end)
            if not pieces:
                continue
            # A value split across texts is one value: the placeholder takes the first piece's place.
            value = "".join(doc.texts[i][a:b] for i, a, b in pieces)
            token = self.placeholder(f.type, value)
            for k, (i, a, b) in enumerate(pieces):
                edits.setdefault(i, []).append((a, b, token if k == 0 else ""))
        for i, spans in edits.items():
            t = texts[i]
            for a, b, token in sorted(spans, reverse=True):
                t = t[:a] + token + t[b:]
            texts[i] = t
        return texts

    def restore(self, text: str) -> str:
        """``text`` with this request's placeholders turned back into their values."""
        if not self._by_placeholder or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def restorer(self) -> StreamRestorer:
        """A restorer for one streamed answer (one per choice)."""
        return StreamRestorer(self)


class StreamRestorer:
    """Restores placeholders in a stream of text pieces, also when one is cut across pieces.

    A trailing ``[`` that could still become a placeholder is held back (at most 48 characters) until
    the next piece decides it; :meth:`flush` releases whatever is held at the end of the stream.
    """

    def __init__(self, owner: Pseudonymiser) -> None:
        self.owner = owner
        self._held = ""

    def feed(self, piece: str) -> str:
        """The restored text that can be released now."""
        text = self._held + piece
        self._held = ""
        if not self.owner._by_placeholder:
            return text
        m = _PARTIAL.search(text)
        if m is not None and len(text) - m.start() < _MAX_PLACEHOLDER:
            self._held = text[m.start() :]
            text = text[: m.start()]
        return self.owner.restore(text)

    def flush(self) -> str:
        """Whatever was held back, restored."""
        text, self._held = self._held, ""
        return self.owner.restore(text)
