"""Classification markings: US CAPCO, UK Government Security Classifications, NATO, Australian PSPF,
and the organisation's own markings from configuration.

A marking is recognised by its *structure*, not by the word alone, so ordinary prose that says "a
secret recipe" or "restricted access" is not a marking:

- CAPCO banners and portions with ``//`` (``TOP SECRET//SI//NOFORN``, ``(S//REL TO USA, GBR)``), in any
  case: the double slash is what makes them markings;
- portion marks ``(TS)``, ``(S)``, ``(C)``, ``(U)``, ``(CUI)`` at the start of a line or sentence,
  upper case only, and not in a text that enumerates ``(A)``/``(B)`` items or writes ``(C) 2024``;
- phrases that only occur as markings, in any case: ``COSMIC TOP SECRET``, ``NATO RESTRICTED``,
  ``OFFICIAL-SENSITIVE``, ``UK EYES ONLY``, ``NOFORN``, ``AUSTEO`` ...;
- a banner line: a line that holds nothing but a classification (with descriptors/caveats), in any
  case and however it is letter-spaced (``S E C R E T``);
- a label: ``Classification: SECRET``, ``Protective marking: OFFICIAL-SENSITIVE``;
- upper-case ``TOP SECRET`` anywhere, and a classification word followed by a caveat.

Levels use Bastion's clearance scale (0 public, 1 official, 2 secret, 3 top secret). Where schemes
differ, the mapping is the conservative one (e.g. CONFIDENTIAL and AU PROTECTED count as 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bastion.dlp.findings import Finding
from bastion.dlp.normalise import View

#: classification phrase (compact: upper case, no separators) -> (level, scheme)
LEVELS: dict[str, tuple[int, str]] = {
    "COSMICTOPSECRET": (3, "nato"),
    "NATOSECRET": (2, "nato"),
    "NATOCONFIDENTIAL": (2, "nato"),
    "NATORESTRICTED": (1, "nato"),
    "NATOUNCLASSIFIED": (0, "nato"),
    "TOPSECRET": (3, "generic"),
    "SECRET": (2, "generic"),
    "CONFIDENTIAL": (2, "capco"),
    "RESTRICTED": (1, "generic"),
    "PROTECTED": (2, "au-pspf"),
    "OFFICIALSENSITIVE": (1, "uk-gsc"),
    "OFFICIAL": (1, "uk-gsc"),
    "UNCLASSIFIED": (0, "capco"),
    "CUI": (1, "capco"),
    "CONTROLLEDUNCLASSIFIEDINFORMATION": (1, "capco"),
    "FOROFFICIALUSEONLY": (1, "capco"),
    "FOUO": (1, "capco"),
}
PORTIONS = {"TS": 3, "S": 2, "C": 2, "U": 0, "CUI": 1}
#: handling caveats and dissemination controls (compact form -> display name)
CAVEATS = {
    "NOFORN": "NOFORN", "ORCON": "ORCON", "IMCON": "IMCON", "PROPIN": "PROPIN", "RELIDO": "RELIDO",
    "UKEYESONLY": "UK EYES ONLY", "EYESONLY": "EYES ONLY", "AUSTEO": "AUSTEO", "AGAO": "AGAO",
    "FVEY": "FVEY", "NOCONTRACT": "NOCONTRACT",
}  # fmt: skip
#: control systems that may follow a level in a banner (not caveats themselves)
CONTROLS = ("SI", "TK", "HCS", "SCI", "SAP", "NF", "FISA", "LIMDIS", "EXDIS")
#: descriptors and DLMs that may follow a level on a banner line (UK GSC descriptors, AU DLMs)
DESCRIPTORS = (
    "COMMERCIAL", "LOCSEN", "PERSONAL", "SENSITIVE", "LEGALPRIVILEGE", "LEGISLATIVESECRECY", "CABINET",
    "NATIONALSECURITY", "MARKETSENSITIVE", "HR", "MEDICAL", "CONTRACTS", "APPOINTMENTS", "POLICY", "UK",
    "ATOMAL", "BOHEMIA",
)  # fmt: skip

_SEP = r"[\s\-_.:/]*"
_LEVEL_WORDS = (
    r"(?:COSMIC\s+TOP\s+SECRET|TOP[\s\-]*SECRET|SECRET|CONFIDENTIAL|RESTRICTED|UNCLASSIFIED|CUI|PROTECTED"
    r"|OFFICIAL)"
)
# CAPCO: a classification followed by '//' (banner): in any case when written tight ("secret//noforn"),
# upper case only when spaced ("SECRET // NOFORN"), since "secret // x" is also how people write prose.
_CAPCO_TAIL = r"[ \t]*[A-Za-z0-9][A-Za-z0-9 ,/\-]{0,120}"
_CAPCO = re.compile(rf"(?<![A-Za-z0-9])(?i:{_LEVEL_WORDS})//{_CAPCO_TAIL}")
_CAPCO_SPACED = re.compile(rf"(?<![A-Za-z0-9]){_LEVEL_WORDS}[ \t]*//{_CAPCO_TAIL}")
_CAPCO_SHORT = re.compile(r"(?<![A-Za-z0-9/])(TS|S|C|U)//[ \t]*[A-Za-z0-9][A-Za-z0-9 ,/\-]{0,120}")
_PORTION = re.compile(
    r"(?:(?<=^)|(?<=[\n.!?:;]\s)|(?<=\n))\s*\((TS|S|C|U|CUI)(//[A-Za-z0-9 ,/\-]{1,80})?\)(?=\s)"
)
_ENUMERATION = re.compile(r"\((?:A|B|a|b|i|ii)\)|\(C\)\s*(?:\d|copyright)|©", re.IGNORECASE)
_PHRASES = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?P<cosmic>COSMIC\s+TOP\s+SECRET)"
    r"|(?P<nato>NATO\s+(?:SECRET|CONFIDENTIAL|RESTRICTED|UNCLASSIFIED))"
    r"|(?P<offsens>OFFICIAL\s*(?:-|–|—|:)\s*SENSITIVE)"
    r"|(?P<caveat>UK\s+EYES\s+ONLY|NOFORN|AUSTEO|AGAO|ORCON|RELIDO)"
    r"|(?P<cui>CONTROLLED\s+UNCLASSIFIED\s+INFORMATION|FOR\s+OFFICIAL\s+USE\s+ONLY)"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# Upper case only: these are ordinary words in lower case.
_UPPER = re.compile(
    r"(?<![A-Za-z0-9])(?:TOP\s+SECRET|OFFICIAL\s+SENSITIVE|FOUO|CUI"
    r"|(?:SECRET|CONFIDENTIAL|RESTRICTED|PROTECTED)\s*(?:-\s*)?(?:UK\s+EYES|NOFORN|REL\s+TO|AUSTEO|ORCON))"
    r"(?![A-Za-z0-9])"
)
_REL_TO = re.compile(r"REL(?:EASABLE)?\s+TO\s+[A-Z]{3,4}(?:\s*,\s*[A-Z]{3,4})*")
_LABEL = re.compile(
    rf"(?:security\s+)?(?:classification|classified|protective\s+marking|marking)\s*[:=]\s*"
    rf"(?P<level>NATO\s+\w+|COSMIC\s+TOP\s+SECRET|OFFICIAL\s*[-:]?\s*SENSITIVE|{_LEVEL_WORDS})"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_LINE = re.compile(r"[^\n]+")
_DECORATION = re.compile(r"[\s*=#\-_\[\](){}<>|:.,/\\~+]+")
_BANNER = re.compile(
    "^(" + "|".join(sorted(LEVELS, key=len, reverse=True)) + ")"
    "((?:"
    + "|".join(sorted([*CAVEATS, *CONTROLS, *DESCRIPTORS], key=len, reverse=True))
    + "|REL(?:EASABLE)?TO(?:[A-Z]{3})+)*)$"
)
_MAX_BANNER_LINE = 80


@dataclass(frozen=True)
class OrgMarking:
    """An organisation-defined marking: its label (matched in any case and spacing) and its level."""

    label: str
    level: int


def compact(text: str) -> str:
    """Upper case without separators: the form levels are compared in."""
    return _DECORATION.sub("", text).upper()


class MarkingDetector:
    """Finds classification markings in a normalised view."""

    name = "markings"

    def __init__(self, org: Iterable[OrgMarking] = ()) -> None:
        self.org = tuple(org)
        self._org_re = [(_label_pattern(m.label), m) for m in self.org if m.label.strip()]

    def detect(self, view: View) -> list[Finding]:
        """Every marking in ``view`` (spans in the original text)."""
        text = view.text
        found: list[Finding] = []

        def add(start: int, end: int, level: int, scheme: str, words: str) -> None:
            s, e = view.span(start, end)
            found.append(Finding("marking", "marking", s, e, level, scheme, _caveats(words)))

        for rx in (_CAPCO, _CAPCO_SPACED):
            for m in rx.finditer(text):
                level, _ = _level_of(m.group(0).split("//")[0])
                add(m.start(), m.end(), level, "capco", m.group(0))
        for m in _CAPCO_SHORT.finditer(text):
            add(m.start(), m.end(), PORTIONS[m.group(1)], "capco", m.group(0))
        lists = _ENUMERATION.search(text) is not None
        for m in _PORTION.finditer(text):
            mark = m.group(1)
            if lists and mark in ("C", "S") and not m.group(2):
                continue  # "(C) the third option", "(C) 2024": an enumeration or a copyright, not a portion
            add(m.start(1) - 1, m.end(), PORTIONS[mark], "capco", m.group(0))
        for m in _PHRASES.finditer(text):
            word = compact(m.group(0))
            if m.group("caveat"):
                add(m.start(), m.end(), 1, "caveat", m.group(0))
            else:
                level, scheme = LEVELS.get(word, (1, "capco"))
                add(m.start(), m.end(), level, scheme, m.group(0))
        for m in _UPPER.finditer(text):
            level, scheme = _level_of(m.group(0))
            add(m.start(), m.end(), level, scheme, m.group(0))
        for m in _REL_TO.finditer(text):
            add(m.start(), m.end(), 1, "caveat", "RELTO")
        for m in _LABEL.finditer(text):
            level, scheme = _level_of(m.group("level"))
            add(m.start(), m.end(), level, scheme, m.group(0))
        for m in _LINE.finditer(text):
            line = m.group(0)
            if len(line) > _MAX_BANNER_LINE or not any(c.isalpha() for c in line):
                continue
            banner = _BANNER.match(compact(line))
            if banner:
                level, scheme = LEVELS[banner.group(1)]
                add(m.start(), m.end(), level, scheme, banner.group(2))
        for rx, org in self._org_re:
            for m in rx.finditer(text):
                add(m.start(), m.end(), org.level, "org", "")
        return _merge(found)


def _label_pattern(label: str) -> re.Pattern[str]:
    """An organisation label in any case, with any separators between its words."""
    words = _SEP.join(re.escape(w) for w in label.split())
    return re.compile(r"(?<![A-Za-z0-9])" + words + r"(?![A-Za-z0-9])", re.IGNORECASE)


def _merge(found: list[Finding]) -> list[Finding]:
    """One finding per overlapping run of markings: the highest level, every caveat read."""
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if out and f.start < out[-1].end:
            last = out[-1]
            top = last if last.level >= f.level else f
            out[-1] = Finding(
                "marking", "marking", last.start, max(last.end, f.end), top.level,
                top.scheme if top.scheme != "caveat" else (f.scheme if top is last else last.scheme),
                tuple(sorted(set(last.caveats) | set(f.caveats))),
            )  # fmt: skip
        else:
            out.append(f)
    return out


def _level_of(words: str) -> tuple[int, str]:
    """The highest level named in ``words`` (a phrase, a banner's first part)."""
    c = compact(words)
    if c in PORTIONS:
        return PORTIONS[c], "capco"
    for phrase, (level, scheme) in sorted(LEVELS.items(), key=lambda kv: -len(kv[0])):
        if phrase in c:
            return level, scheme
    return 1, "caveat"


def _caveats(words: str) -> tuple[str, ...]:
    c = compact(words)
    found = {name for key, name in CAVEATS.items() if key in c}
    if re.search(r"//\s*NF\b", words, re.IGNORECASE):
        found.add("NOFORN")
    if "RELTO" in c or "RELEASABLETO" in c:
        found.add("REL TO")
    if "UK EYES ONLY" in found:
        found.discard("EYES ONLY")
    return tuple(sorted(found))
