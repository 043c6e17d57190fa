"""Text out of documents: Markdown, plain text, HTML, PDF (pypdf) and DOCX (python-docx).

Each parser returns an :class:`Extracted` (title and text). The extracted text is what chunks and
citations point into: a hit's ``start``/``end`` are offsets into it, so it is stored with the document
and never re-derived. Nothing here reaches the network or runs OCR; a file that cannot be read raises
UnusableInput naming the file, the problem and the fix, and the caller goes on with the next file.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput

#: the largest file we read (a document, not a data dump; also bounds what a bad PDF can cost)
MAX_FILE_BYTES = 64 * 1024 * 1024
#: DOCX is a zip: refuse one that would expand past this (zip bomb)
MAX_DOCX_UNZIPPED = 256 * 1024 * 1024


@dataclass(frozen=True)
class Extracted:
    """A document's title and the text every offset refers to."""

    kind: str
    title: str
    text: str


def _normalise(text: str) -> str:
    # One newline convention and no NULs, so offsets mean the same thing whoever reads the text back.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _first_line(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnusableInput(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})",
            hint="Convert the file to UTF-8 (e.g. iconv -t UTF-8) and ingest it again.",
        ) from exc


def parse_markdown(path: Path, data: bytes) -> Extracted:
    """Markdown is kept as written: citations then quote the source the author wrote."""
    text = _normalise(_decode(path, data))
    heading = next((m.group(1) for m in re.finditer(r"^#\s+(.+)$", text, re.MULTILINE)), None)
    return Extracted("markdown", (heading or _first_line(text, path.stem)).strip()[:200], text)


def parse_text(path: Path, data: bytes) -> Extracted:
    """Plain text, as is."""
    text = _normalise(_decode(path, data))
    return Extracted("text", _first_line(text, path.stem), text)


class _HtmlText(HTMLParser):
    """Visible text of an HTML page; script, style and template contents are dropped."""

    SKIP = frozenset({"script", "style", "template", "noscript", "head"})
    BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "section",
            "article",
            "pre",
            "table",
            "ul",
            "ol",
            "blockquote",
            "hr",
            "title",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.h1 = ""
        self._skip = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n")
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        current = self._in[-1] if self._in else ""
        if current == "title":
            self.title += data
        if self._skip:
            return
        if current == "h1" and not self.h1:
            self.h1 = data
        self.parts.append(data)


def parse_html(path: Path, data: bytes) -> Extracted:
    """Visible text of an HTML page, paragraphs separated by blank lines."""
    parser = _HtmlText()
    parser.feed(_decode(path, data))
    parser.close()
    raw = "".join(parser.parts)
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in _normalise(raw).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
    title = (parser.title.strip() or parser.h1.strip() or _first_line(text, path.stem))[:200]
    return Extracted("html", " ".join(title.split()), text)


def parse_pdf(path: Path, data: bytes) -> Extracted:
    """Text of every page (pypdf's text layer; scanned pages without one yield nothing: no OCR)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise UnusableInput(
                f"{path}: the PDF is encrypted",
                hint="Export an unencrypted copy (e.g. qpdf --decrypt) and ingest that.",
            )
        pages = [_normalise(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = reader.metadata.title if reader.metadata else None
    except UnusableInput:
        raise
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        NotImplementedError,  # e.g. an /Encrypt dictionary of a version pypdf does not implement
    ) as exc:
        raise UnusableInput(
            f"{path}: not a readable PDF ({type(exc).__name__}: {exc})",
            hint="Re-export the file as PDF from the program that made it, or convert it to text.",
        ) from exc
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise UnusableInput(
            f"{path}: the PDF has no text layer ({len(pages)} page(s), no extractable text)",
            hint="It is probably scanned; Bastion does no OCR: run OCR (e.g. ocrmypdf) and ingest that.",
        )
    title = str(meta_title).strip() if meta_title else ""
    return Extracted("pdf", (title or _first_line(text, path.stem))[:200], text + "\n")


def parse_docx(path: Path, data: bytes) -> Extracted:
    """Paragraphs and table cells of a Word document, in document order."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import LxmlError  # python-docx's XML parser: broken parts raise its errors

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(i.file_size for i in archive.infolist()) > MAX_DOCX_UNZIPPED:
                raise UnusableInput(
                    f"{path}: the DOCX expands to more than {MAX_DOCX_UNZIPPED // 2**20} MiB",
                    hint="This looks like a zip bomb; ask for the document again from its author.",
                )
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = [p.text for p in document.paragraphs]
        blocks += _table_rows(document)
        title = document.core_properties.title or ""
    except UnusableInput:
        raise
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError, OSError, LxmlError) as exc:
        raise UnusableInput(
            f"{path}: not a readable DOCX ({type(exc).__name__}: {exc})",
            hint="Open it in a word processor and save it again as .docx, or convert it to text.",
        ) from exc
    text = _normalise("\n\n".join(b.strip() for b in blocks if b.strip()))
    if not text:
        raise UnusableInput(f"{path}: the DOCX has no text", hint="Check that it is the document you meant.")
    return Extracted("docx", (title.strip() or _first_line(text, path.stem))[:200], text + "\n")


def _table_rows(document: Any) -> list[str]:
    """Each row of the document body's tables as its cells' text, tab-separated, every cell once as written.

    Not python-docx's ``row.cells``: it repeats a cell once per grid column it spans, so a 1 KB file
    with ``<w:gridSpan w:val="200000000"/>`` made it build a list of 200 million cells (a parser hang),
    and an honest merged cell's text was indexed once per column.
    """
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    rows = []
    for table in document.element.body.iterchildren(qn("w:tbl")):
        for tr in table.iterchildren(qn("w:tr")):
            cells = (
                "\n".join(Paragraph(p, document).text for p in tc.iterchildren(qn("w:p")))
                for tc in tr.iterchildren(qn("w:tc"))
            )
            rows.append("\t".join(cells))
    return rows


PARSERS: dict[str, Callable[[Path, bytes], Extracted]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}


def supported(path: Path) -> bool:
    """True for a file whose extension has a parser."""
    return path.suffix.lower() in PARSERS


def extract(path: Path, data: bytes, name: str | None = None) -> Extracted:
    """Parse ``data`` (the bytes of ``path``) by the extension of ``name`` or the path."""
    suffix = Path(name or path.name).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None:
        raise UnusableInput(
            f"{path}: no parser for {suffix or 'files without an extension'}",
            hint=f"Bastion reads {', '.join(sorted(PARSERS))}; convert the file to one of them.",
        )
    if len(data) > MAX_FILE_BYTES:
        raise UnusableInput(
            f"{path}: {len(data)} bytes is more than the {MAX_FILE_BYTES // 2**20} MiB a document may have",
            hint="Split the document, or convert it to text and ingest the parts.",
        )
    return parser(path, data)
