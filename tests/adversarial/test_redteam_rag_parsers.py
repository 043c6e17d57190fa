"""Red-team attacks on ingestion with hostile files (a ~1 KB upload is enough for each).

Both once worked:

- ``test_a_docx_grid_span_does_not_multiply_a_cell``: python-docx's ``row.cells`` repeats a cell once
  per grid column it claims to span, so ``<w:gridSpan w:val="200000000"/>`` in a 1 KB DOCX had the
  parser build 200 million cells (minutes of CPU and gigabytes of memory on a gateway thread per
  upload). Here a span of 200,000 shows the amplification without the hang.
- ``test_a_pdf_with_an_unimplemented_encryption_fails_alone``: pypdf raises NotImplementedError for an
  ``/Encrypt`` version it does not implement; it escaped the parser's error handling, aborted the whole
  ingest (every later file of the folder, and the batch waiting for its vectors) and answered a
  vector-store attach with a 500.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from bastion.rag.parse import extract
from tests.adversarial.test_redteam_rag_store import PUBLIC_TEXT, _store

W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
    '"/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
    'document.main+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
    'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def _docx(body: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document {W}><w:body>{body}</w:body></w:document>')
    return out.getvalue()


def _cell(text: str, span: int = 1) -> str:
    return f'<w:tc><w:tcPr><w:gridSpan w:val="{span}"/></w:tcPr><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:tc>'


def test_a_docx_grid_span_does_not_multiply_a_cell(tmp_path: Path) -> None:
    data = _docx(
        "<w:p><w:r><w:t>Quarterly figures</w:t></w:r></w:p><w:tbl><w:tblGrid><w:gridCol w:w=\"100\"/></w:tblGrid>"
        f"<w:tr>{_cell('Spanned', 200_000)}{_cell('Next')}</w:tr><w:tr>{_cell('North')}{_cell('12')}</w:tr></w:tbl>"
    )
    assert len(data) < 2000
    text = extract(tmp_path / "span.docx", data).text
    assert text == "Quarterly figures\n\nSpanned\tNext\n\nNorth\t12\n"  # every cell once, as written


PDF_UNIMPLEMENTED_ENCRYPTION = (
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"xref\n0 2\n0000000000 65535 f \n0000000009 00000 n \n"
    b"trailer\n<< /Size 2 /Root 1 0 R /Encrypt << /Filter /Standard /V 99 /R 99 >> >>\n"
    b"startxref\n58\n%%EOF\n"
)


def test_a_pdf_with_an_unimplemented_encryption_fails_alone(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-canteen.md").write_text(PUBLIC_TEXT, encoding="utf-8")
    (folder / "b-locked.pdf").write_bytes(PDF_UNIMPLEMENTED_ENCRYPTION)
    (folder / "c-parking.txt").write_text("Visitors park in bay C near reception.", encoding="utf-8")
    store = _store(tmp_path)
    try:
        store.create_collection("kb")
        report = store.ingest("kb", folder, classification="public", groups=["staff"])
        status = {Path(f.path).name: f.status for f in report.files}
        assert status == {"a-canteen.md": "ingested", "b-locked.pdf": "failed", "c-parking.txt": "ingested"}
        (failed,) = report.failed
        assert failed.error is not None
        assert "b-locked.pdf" in failed.error["message"] and "not a readable PDF" in failed.error["message"]
        assert store.show("kb").documents == 2
    finally:
        store.close()
