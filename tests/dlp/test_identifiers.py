"""Personal identifiers are found only when their validator accepts them."""

from __future__ import annotations

import pytest

from bastion.dlp import scan

FOUND = [
    ("Card 4111 1111 1111 1111 please", "credit_card", "4111 1111 1111 1111"),
    ("amex 378282246310005.", "credit_card", "378282246310005"),
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("de89370400440532013000", "iban", "de89370400440532013000"),
    ("SSN 536-90-4399", "us_ssn", "536-90-4399"),
    ("my social security number is 536904399", "us_ssn", "536904399"),
    ("NINO AB 12 34 56 C", "uk_nino", "AB 12 34 56 C"),
    ("NHS number 943 476 5919", "uk_nhs", "943 476 5919"),
    ("write to jane.doe+x@mail.example.co.uk today", "email", "jane.doe+x@mail.example.co.uk"),
    ("call +44 20 7946 0958", "phone", "+44 20 7946 0958"),
    ("call (212) 555-0199 now", "phone", "(212) 555-0199"),
    ("from 192.168.1.20 and", "ip_address", "192.168.1.20"),
    ("host 2001:db8::1 is up", "ip_address", "2001:db8::1"),
]
NOT_FOUND = [
    "Card 4111 1111 1111 1112",  # Luhn fails
    "order 1234567812345678",  # Luhn fails / no issuer prefix
    "IBAN GB82 WEST 1234 5698 7654 33",  # mod-97 fails
    "SSN 000-12-3456",  # area 000 is never issued
    "SSN 666-12-3456",
    "NINO BG 12 34 56 C",  # BG is not a NINO prefix
    "version 1.2.3.4 shipped",
    "at 999.1.1.1",
    "I have 3 apples and 4 pears",
]


@pytest.mark.parametrize(("text", "kind", "value"), FOUND)
def test_identifier_is_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    found = [f for f in scan(text).items if f.type == kind]
    assert [text[f.start : f.end] for f in found] == [value], scan(text).to_json()


@pytest.mark.parametrize("text", NOT_FOUND)
def test_invalid_identifiers_are_not_findings(text: str) -> None:
    assert not scan(text).category_counts()["personal"], scan(text).to_json()


def test_an_nhs_checksum_without_nhs_nearby_is_not_an_nhs_number() -> None:
    assert "uk_nhs" not in scan("ref 943 476 5919").counts()


def test_a_card_number_is_not_also_a_phone_number() -> None:
    assert scan("pay with 4111-1111-1111-1111").counts() == {"credit_card": 1}
