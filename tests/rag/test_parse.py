"""Parsers: each format's text and title; malformed files give a clear error naming file and fix."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from bastion.errors import UnusableInput
from bastion.rag import extract
from tests.rag.corpus import docx_bytes, pdf_bytes


def test_markdown_is_kept_as_written_with_its_first_heading_as_title(tmp_path: Path) -> None:
    got = extract(tmp_path / "a.md", b"intro\r\n# Real title\r\n\r\nBody text.\r\n")
    assert got.kind == "markdown" and got.title == "Real title"
    assert got.text == "intro\n# Real title\n\nBody text.\n"


def test_html_drops_scripts_and_styles_and_keeps_paragraphs(tmp_path: Path) -> None:
    page = (
        b"<html><head><title>Travel &amp; leave</title><style>p{color:red}</style>"
        b"<script>alert('secret')</script></head><body><h1>Travel</h1><p>Book  trains.</p><p>Keep receipts.</p>"
        b"</body></html>"
    )
    got = extract(tmp_path / "a.html", page)
    assert got.title == "Travel & leave"
    assert "alert" not in got.text and "color" not in got.text
    assert "Book trains." in got.text and "Keep receipts." in got.text


def test_pdf_text_layer_and_metadata_title(tmp_path: Path) -> None:
    got = extract(tmp_path / "a.pdf", pdf_bytes("Quarterly (draft)", ["First line here.", "Second line."]))
    assert got.kind == "pdf" and got.title == "Quarterly (draft)"
    assert "First line here." in got.text and "Second line." in got.text


def test_docx_paragraphs_and_title(tmp_path: Path) -> None:
    got = extract(tmp_path / "a.docx", docx_bytes("Leave policy", ["Twenty-eight days.", "Carry over five."]))
    assert got.kind == "docx" and got.title == "Leave policy"
    assert "Twenty-eight days." in got.text and "Carry over five." in got.text


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        (
            "broken.pdf",
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer << >>\n%%EOF",
            "PDF",
        ),
        ("truncated.pdf", pdf_bytes("T", ["some text"])[:200], "PDF"),
        ("notpdf.pdf", b"GIF89a this is an image", "PDF"),
        ("empty.pdf", b"", "PDF"),
        ("notzip.docx", b"PK\x03\x04 this is not really a zip", "DOCX"),
        ("text.docx", b"just text, not a docx", "DOCX"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "UTF-8"),
        ("image.png", b"\x89PNG\r\n", "no parser"),
    ],
)
def test_malformed_files_raise_unusable_input_naming_file_problem_and_fix(
    tmp_path: Path, name: str, data: bytes, problem: str
) -> None:
    with pytest.raises(UnusableInput) as caught:
        extract(tmp_path / name, data)
    assert name in caught.value.message and problem in caught.value.message
    assert caught.value.hint


def test_docx_with_broken_xml_part_is_refused(tmp_path: Path) -> None:
    good = docx_bytes("T", ["p"])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "word/document.xml":
                body = body[: len(body) // 2]  # cut mid-element
            dst.writestr(item, body)
    with pytest.raises(UnusableInput, match="bad.docx"):
        extract(tmp_path / "bad.docx", out.getvalue())


def test_pdf_without_text_layer_says_no_ocr(tmp_path: Path) -> None:
    with pytest.raises(UnusableInput, match="no text layer") as caught:
        extract(tmp_path / "scan.pdf", pdf_bytes("", []).replace(b"() Tj T*", b""))
    assert "OCR" in caught.value.hint
