"""Structured personal identifiers, each a candidate pattern confirmed by its validator.

Validators come from well-kept libraries where one exists: ``python-stdnum`` (Luhn, IBAN mod-97 with
per-country lengths, US SSN area/group/serial rules, NHS mod-11) and Google's ``phonenumbers``
(phone numbers, validated against the numbering plan). UK National Insurance numbers are checked
against HMRC's published prefix rules here, since stdnum has no NINO module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

import phonenumbers
from stdnum import iban, luhn
from stdnum.gb import nhs
from stdnum.us import ssn

from bastion.dlp.findings import Finding
from bastion.dlp.normalise import View

_CARD = re.compile(r"(?<![\d.])(?:\d[ -]?){11,18}\d(?![\d])")
# Issuer prefixes (IIN ranges) of the card schemes: Luhn alone passes one random number in ten.
# Visa, Mastercard, Amex, Diners, Discover, JCB (incl. the legacy 15-digit 1800/2131), UnionPay, Maestro.
_CARD_IIN = re.compile(
    r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9])|35|62|1800|2131|50[0-9]|5[6-9]|6[0-9])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_BARE = re.compile(r"(?<![\d-])\d{9}(?![\d-])")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social\s+security)\b", re.IGNORECASE)
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D](?![A-Za-z0-9])",
    re.IGNORECASE,
)
_NINO_BAD_PREFIX = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}
_NHS = re.compile(r"(?<![\d-])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\d-])")
# A ten-digit mod-11 number is one phone number in eleven: an NHS number needs its name nearby.
_NHS_CONTEXT = re.compile(r"\bnhs\b", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
)
_IPV4 = re.compile(r"(?<![\d.])(?<!\bv)(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_DIGITS = re.compile(r"\d")
_PHONE_SHAPE = (
    r"(?:\+\d{1,3}[-. ]?|00\d[-. ]?)?(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-. ]\d{4}"
    r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?"
)
_PHONE_FORMAT = re.compile(f"^{_PHONE_SHAPE}$")
_PHONE_FORMAT_ANYWHERE = re.compile(_PHONE_SHAPE)
_PHONE_HINT = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6}")
_Add = Callable[[str, int, int], None]
_VERSION = re.compile(r"(?:version|ver\.?|release|v)\s*$", re.IGNORECASE)


class IdentifierDetector:
    """Cards, IBANs, US SSNs, UK NINOs and NHS numbers, e-mail addresses, phone numbers, IP addresses."""

    name = "identifiers"

    def __init__(self, phone_regions: Iterable[str] = ("US", "GB")) -> None:
        self.phone_regions = tuple(phone_regions)

    def detect(self, view: View) -> list[Finding]:
        """Every validated identifier in ``view`` (spans in the original text)."""
        text = view.text
        found: list[Finding] = []
        claimed: list[tuple[int, int]] = []  # view spans, for blanking before the phone matcher

        def add(kind: str, start: int, end: int) -> None:
            s, e = view.span(start, end)
            found.append(Finding(kind, "personal", s, e))
            claimed.append((start, end))

        if "@" in text:
            for m in _EMAIL.finditer(text):
                add("email", m.start(), m.end())
        if "." in text or ":" in text:
            for m in _IPV4.finditer(text):
                if _valid_ip(m.group(0)) and not _VERSION.search(text, max(0, m.start() - 9), m.start()):
                    add("ip_address", m.start(), m.end())
            if "::" in text or text.count(":") >= 3:
                for m in _IPV6.finditer(text):
                    if m.group(0).count(":") >= 2 and _valid_ip(m.group(0)):
                        add("ip_address", m.start(), m.end())
        for m in _IBAN.finditer(text):
            # The pattern may run on into the next words ("... 7654 32 thanks"): the IBAN is the
            # longest run of its groups that validates.
            candidate = m.group(0)
            cut = len(candidate)
            while cut >= 15:
                if iban.is_valid(candidate[:cut]):
                    add("iban", m.start(), m.start() + cut)
                    break
                cut = candidate.rfind(" ", 0, cut)
        for m in _NINO.finditer(text):
            if m.group(1).upper() not in _NINO_BAD_PREFIX:
                add("uk_nino", m.start(), m.end())
        if len(_DIGITS.findall(text)) >= 7:
            self._numbers(text, claimed, add)
        return found

    def _numbers(self, text: str, claimed: list[tuple[int, int]], add: _Add) -> None:
        for m in _CARD.finditer(text):
            number = re.sub(r"[ -]", "", m.group(0))
            if 12 <= len(number) <= 19 and _CARD_IIN.match(number) and luhn.is_valid(number):
                add("credit_card", m.start(), m.end())
        for m in _SSN.finditer(text):
            if ssn.is_valid(m.group(1) + m.group(3) + m.group(4)):
                add("us_ssn", m.start(), m.end())
        if _SSN_CONTEXT.search(text):
            for m in _SSN_BARE.finditer(text):
                if ssn.is_valid(m.group(0)):
                    add("us_ssn", m.start(), m.end())
        if _NHS_CONTEXT.search(text):
            for m in _NHS.finditer(text):
                if nhs.is_valid(m.group(0).replace("-", " ")):
                    add("uk_nhs", m.start(), m.end())
        # Phone numbers last, on the text with every identifier found so far blanked out (same length,
        # so offsets hold): the matcher is the slow part, and a card number is not also a phone number.
        rest = _blank(text, claimed)
        if not _PHONE_HINT.search(rest):
            return
        seen: set[tuple[int, int]] = set()
        # Numbers valid in the numbering plan; then, when the text holds something written the way phone
        # numbers are written ("(466) 409-9353 x875", "+1-556-391-4630"), possible numbers in that shape:
        # validity alone misses unassigned area codes, and a bare digit run (an order number, an amount)
        # is not a phone number without one or the other.
        passes = [(phonenumbers.Leniency.VALID, False)]
        if _PHONE_FORMAT_ANYWHERE.search(rest):
            passes.append((phonenumbers.Leniency.POSSIBLE, True))
        for leniency, shaped in passes:
            for region in self.phone_regions:
                for match in phonenumbers.PhoneNumberMatcher(rest, region, leniency=leniency):
                    if shaped and not _PHONE_FORMAT.match(match.raw_string):
                        continue
                    if (match.start, match.end) not in seen:
                        seen.add((match.start, match.end))
                        add("phone", match.start, match.end)


def _blank(text: str, claimed: list[tuple[int, int]]) -> str:
    """``text`` with the spans already claimed replaced by spaces (same length, so offsets hold)."""
    for start, end in sorted(claimed):
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
