"""Markings of the four schemes and organisation markings are found; ordinary prose is not a marking."""

from __future__ import annotations

import pytest

from bastion.dlp import OrgMarking, Scanner, scan

MARKED = [
    ("TOP SECRET//SI//NOFORN\nThe plan is attached.", 3, ("NOFORN",)),
    ("(S//REL TO USA, GBR) The convoy moves at dawn.", 2, ("REL TO",)),
    ("CUI\nExport-controlled drawings follow.", 1, ()),
    ("(U//FOUO) Staff directory.", 1, ()),
    ("Para one.\n(TS) Sources and methods.", 3, ()),
    ("OFFICIAL-SENSITIVE\nPersonnel file.", 1, ()),
    ("OFFICIAL-SENSITIVE: COMMERCIAL", 1, ()),
    ("SECRET UK EYES ONLY\nBriefing notes.", 2, ("UK EYES ONLY",)),
    ("TOP SECRET\n\nMinutes of the meeting.", 3, ()),
    ("NATO RESTRICTED\nExercise schedule.", 1, ()),
    ("COSMIC TOP SECRET - ATOMAL", 3, ()),
    ("NATO CONFIDENTIAL", 2, ()),
    ("PROTECTED Sensitive: Cabinet\nBudget figures.", 2, ()),
    ("OFFICIAL: Sensitive\nPersonal privacy notes.", 1, ()),
    ("SECRET AUSTEO", 2, ("AUSTEO",)),
    ("Classification: Secret\nThe memo.", 2, ()),
    ("Protective marking: OFFICIAL-SENSITIVE", 1, ()),
    ("top secret//noforn", 3, ("NOFORN",)),
    ("The briefing is TOP SECRET and must not leave the room.", 3, ()),
]

CLEAN = [
    "The recipe is a family secret, and access to the kitchen is restricted.",
    "Can you keep a secret? The surprise party is on Friday.",
    "Top secret tip: add a pinch of salt.",
    "Restricted stock units vest over four years.",
    "This is a confidential conversation between friends.",
    "The official launch is next week; entry is restricted to ticket holders.",
    "Protected areas cover 15% of the land.",
    "See https://example.com/s//x and item(s) (c) 2024.",
    "(C) 2024 Example Corp. All rights reserved.",
    "Options: (A) red (B) green (C) blue.",
    "The secret // is out",
    "Secret fun",
    "Unclassified ads were popular in the 1990s.",
]


@pytest.mark.parametrize(("text", "level", "caveats"), MARKED)
def test_marking_is_found_with_its_level_and_caveats(text: str, level: int, caveats: tuple[str, ...]) -> None:
    found = scan(text)
    assert found.marking_level == level, found.to_json()
    assert set(caveats) <= set(found.caveats)


@pytest.mark.parametrize("text", CLEAN)
def test_prose_that_says_secret_or_restricted_is_not_a_marking(text: str) -> None:
    assert scan(text).category_counts()["marking"] == 0, scan(text).to_json()


def test_organisation_markings_are_matched_in_any_case_and_spacing() -> None:
    scanner = Scanner([OrgMarking("ACME CONFIDENTIAL", 2), OrgMarking("Project Nightjar", 3)])
    assert scanner.scan("acme   confidential - draft").marking_level == 2
    assert scanner.scan("Notes on PROJECT-NIGHTJAR").marking_level == 3
    assert scanner.scan("Acme is confident about the project").marking_level == -1


def test_marking_spans_point_at_the_original_text() -> None:
    text = "Header\nTOP SECRET//NOFORN\nBody"
    (f,) = scan(text).items
    assert text[f.start : f.end] == "TOP SECRET//NOFORN"
    assert "TOP SECRET" not in str(f.to_json())
