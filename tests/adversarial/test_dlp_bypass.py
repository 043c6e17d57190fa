"""Attempts to slip markings, personal data and secrets past the scanner: each once looked plausible."""

from __future__ import annotations

import pytest

from bastion.dlp import Document, Pseudonymiser, Scanner, StreamScanner, scan, scan_document

ZW = "\u200b"


@pytest.mark.parametrize(
    "text",
    [
        "T\u041eP SECRET//NOFORN",  # Cyrillic O
        "ＴＯＰ ＳＥＣＲＥＴ//ＮＯＦＯＲＮ",  # fullwidth
        f"TOP SE{ZW}CRET//NO{ZW}FORN",  # zero-width space
        "TOP SE\u00adCRET//NOFORN",  # soft hyphen
        "T\u2060OP SECRET\u200d//NOFORN",  # word joiner, zero-width joiner
        "𝐓𝐎𝐏 𝐒𝐄𝐂𝐑𝐄𝐓//𝐍𝐎𝐅𝐎𝐑𝐍",  # mathematical bold
        "T O P   S E C R E T\nThe plan.",  # letter-spaced banner line
        "top\tsecret\n\nthe plan",  # tab, lower case banner line
        "TOP\u00a0SECRET//SI",  # no-break space
        "S̲E̲C̲R̲E̲T̲//NOFORN",  # combining underline
    ],
)
def test_look_alike_and_invisible_characters_do_not_hide_a_marking(text: str) -> None:
    assert scan(text).marking_level >= 2, scan(text).to_json()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"4111{ZW}1111{ZW}1111{ZW}1111", "credit_card"),
        ("４１１１ １１１１ １１１１ １１１１", "credit_card"),
        (f"a.b{ZW}@example.com", "email"),
        ("AKIA\u200bIOSFODNN7EXAMPLE", "aws_access_key"),
    ],
)
def test_invisible_characters_do_not_hide_values_and_the_span_covers_them(text: str, kind: str) -> None:
    found = [f for f in scan(text).items if f.type == kind]
    assert found, scan(text).to_json()
    (out,) = Pseudonymiser("redact").apply(Document.of([text]), scan(text))
    assert out == f"[REDACTED_{kind.upper()}]"


def test_a_marking_split_across_messages_is_found() -> None:
    doc = Document.of(["Please summarise the following. TOP SEC", "RET//NOFORN The source is ..."])
    assert scan_document(Scanner(), doc).marking_level == 3


def test_a_card_split_across_messages_is_pseudonymised_whole() -> None:
    doc = Document.of(["my card is 4111 1111 ", "1111 1111 ok"])
    p = Pseudonymiser()
    out = p.apply(doc, scan_document(Scanner(), doc))
    assert "1111" not in "".join(out)
    assert p.restore("".join(out)).startswith("my card is 4111 1111 1111 1111")


def test_secret_split_across_stream_chunks_is_found() -> None:
    stream = StreamScanner(Scanner(), step=4)
    for piece in ["AK", "IAIOSF", "ODNN7E", "XAMPLE is the key"]:
        stream.feed(piece)
    stream.close()
    assert stream.findings.counts() == {"aws_access_key": 1}
