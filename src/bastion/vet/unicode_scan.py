"""Invisible and bidirectional Unicode in templates and special tokens.

Bidi controls reorder what a reviewer sees (Trojan Source, CVE-2021-42574); tag characters
(U+E0000-E007F) carry ASCII that renders as nothing ("ASCII smuggling"); zero-width characters make
two tokens that look identical differ. In a chat template or a special token none of these has a
legitimate use that outweighs the risk, so bidi and tags fail and zero-width characters warn.
"""

from __future__ import annotations

import unicodedata

from bastion.vet.findings import Finding, Severity

BIDI = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C}


def _kind(ch: str) -> tuple[Severity, str] | None:
    cp = ord(ch)
    if cp in BIDI:
        return Severity.FAIL, "bidirectional control"
    if 0xE0000 <= cp <= 0xE007F:
        return Severity.FAIL, "tag character (invisible ASCII)"
    if unicodedata.category(ch) == "Cf" or cp in (0x115F, 0x1160, 0x3164, 0xFFA0):
        return Severity.WARN, "invisible format character"
    return None


def scan_text(text: str, file: str, where: str, code: str) -> list[Finding]:
    """Findings for invisible or bidi characters in ``text`` (at most one per kind, with the first offset)."""
    seen: dict[str, Finding] = {}
    for i, ch in enumerate(text):
        if ch.isascii():
            continue
        k = _kind(ch)
        if k is None or k[1] in seen:
            continue
        sev, label = k
        name = unicodedata.name(ch, f"U+{ord(ch):04X}")
        seen[label] = Finding(
            code, sev, file, f"{where} char {i}", f"{label} U+{ord(ch):04X} {name} hides text from a reviewer"
        )
    return list(seen.values())


def scan_tokens(tokens: tuple[str, ...] | list[str], file: str, where: str) -> list[Finding]:
    """Findings for special tokens that contain invisible or bidi characters."""
    out: list[Finding] = []
    for tok in tokens:
        if tok.isascii():
            continue
        for f in scan_text(tok, file, where, "TOKEN_INVISIBLE_UNICODE"):
            out.append(
                Finding(f.code, f.severity, f.file, f"{where} token {tok!r}", f"special token: {f.message}")
            )
    return out
