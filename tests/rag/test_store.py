"""RagStore end to end on real files: labels, re-ingest, relabel, deletes, failures, policy."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from bastion.errors import NotFound, UsageError
from bastion.rag import RagStore
from tests.rag.corpus import BOB, TESS, config_text, docx_bytes, embedder, pdf_bytes

SECRET = "Operation NIGHTJAR moves the radar spares to the northern depot on Friday."
PUBLIC = "The canteen serves soup on Tuesday and coffee is free before nine."


def _store(tmp_path: Path, extra: str = "") -> RagStore:
    config = tmp_path / "bastion.toml"
    config.write_text(config_text(tmp_path / "rag.db") + extra)
    store = RagStore.open(config, embedder=embedder())
    store.create_collection("kb")
    return store


def _rows(store: RagStore) -> tuple[int, int, int]:
    conn = sqlite3.connect(store.settings.rag.path)
    try:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("rag_documents", "rag_chunks", "rag_fts")
        )
    finally:
        conn.close()


def test_labels_most_specific_wins_and_missing_labels_fail_closed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "ops").mkdir(parents=True)
    (docs / "folder.meta.toml").write_text('classification = "official"\ngroups = ["staff", "intel"]\n')
    (docs / "ops" / "folder.meta.toml").write_text(
        'classification = "secret"\ngroups = ["intel"]\n[[rule]]\nglob = "ts-*"\nclassification = "top-secret"\n'
    )
    (docs / "menu.md").write_text(PUBLIC)
    (docs / "ops" / "plan.md").write_text(SECRET)
    (docs / "ops" / "ts-plan.md").write_text(SECRET.replace("NIGHTJAR", "KINGFISHER"))
    (docs / "ops" / "note.txt").write_text("A note.")
    (docs / "ops" / "note.txt.meta.toml").write_text('classification = "public"\n')
    store = _store(tmp_path)
    report = store.ingest("kb", docs)
    got = {Path(f.path).name: (f.status, f.classification, f.groups) for f in report.files}
    assert got == {
        "menu.md": ("ingested", "official", ("intel", "staff")),
        "plan.md": ("ingested", "secret", ("intel",)),
        "ts-plan.md": ("ingested", "top-secret", ("intel",)),
        "note.txt": ("ingested", "public", ("intel",)),  # sidecar's level, the folder's groups
    }
    loose = tmp_path / "loose.md"
    loose.write_text(PUBLIC)
    failed = store.ingest("kb", loose).failed
    assert len(failed) == 1 and failed[0].error and "no classification" in failed[0].error["message"]
    failed = store.ingest("kb", loose, classification="public").failed
    assert failed and failed[0].error and "no group" in failed[0].error["message"]
    assert store.ingest("kb", loose, classification="public", groups=["staff"]).count("ingested") == 1


def test_reingest_skips_unchanged_replaces_changed_and_relabels_without_reembedding(tmp_path: Path) -> None:
    store = _store(tmp_path)
    doc = tmp_path / "ops.md"
    doc.write_text(SECRET)
    first = store.ingest("kb", doc, classification="official", groups=["staff"]).files[0]
    assert first.status == "ingested"
    assert [h.document_id for h in store.search("kb", "NIGHTJAR radar spares", principal=BOB)] == [
        first.document_id
    ]
    assert store.ingest("kb", doc, classification="official", groups=["staff"]).files[0].status == "skipped"
    # Relabelled to secret/intel: bob loses it at once (decisions are cached per label, not per id).
    relabel = store.ingest("kb", doc, classification="secret", groups=["intel"]).files[0]
    assert relabel.status == "relabelled" and relabel.document_id == first.document_id
    assert store.search("kb", "NIGHTJAR radar spares", principal=BOB) == []
    assert store.search("kb", "NIGHTJAR radar spares", principal=TESS)[0].document_id == first.document_id
    doc.write_text(SECRET.replace("Friday", "Monday") + "\n\n" + PUBLIC)
    replaced = store.ingest("kb", doc, classification="secret", groups=["intel"]).files[0]
    assert replaced.status == "replaced" and replaced.document_id == first.document_id
    hits = store.search("kb", "NIGHTJAR Monday", principal=TESS, mode="bm25")
    assert hits and "Monday" in hits[0].text and not store.search("kb", "Friday", principal=TESS, mode="bm25")
    assert _rows(store) == (1, replaced.chunks, replaced.chunks)


def test_delete_document_removes_every_chunk_fts_row_and_vector(tmp_path: Path) -> None:
    store = _store(tmp_path)
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "a.md").write_text(SECRET)
    (docs / "b.md").write_text(PUBLIC)
    report = store.ingest("kb", docs, classification="official", groups=["staff"])
    a = report.files[0].document_id
    assert a is not None
    store.delete_document("kb", a)
    assert _rows(store) == (1, 1, 1)
    assert all(h.document_id != a for h in store.search("kb", "NIGHTJAR radar", principal=TESS))
    with pytest.raises(NotFound):
        store.delete_document("kb", a)
    assert store.delete_collection("kb") == 1
    assert _rows(store) == (0, 0, 0)


def test_a_malformed_file_in_a_folder_is_reported_and_the_rest_ingested(tmp_path: Path) -> None:
    store = _store(tmp_path)
    docs = tmp_path / "d"
    docs.mkdir()
    (docs / "good.pdf").write_bytes(pdf_bytes("Radar spares", [SECRET]))
    (docs / "good.docx").write_bytes(docx_bytes("Canteen", [PUBLIC]))
    (docs / "bad.pdf").write_bytes(b"%PDF-1.7\n garbage \n%%EOF")
    (docs / "bad.docx").write_bytes(b"PK\x03\x04garbage")
    (docs / "photo.png").write_bytes(b"\x89PNG")
    report = store.ingest("kb", docs, classification="official", groups=["staff"])
    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {
        "bad.docx": "failed",
        "bad.pdf": "failed",
        "good.docx": "ingested",
        "good.pdf": "ingested",
        "photo.png": "ignored",
    }
    for f in report.failed:
        assert f.error is not None and Path(f.path).name in f.error["message"] and f.error["hint"]
    documents, chunks, fts = _rows(store)
    assert documents == 2 and chunks == fts
    assert store.search("kb", "NIGHTJAR", principal=BOB, mode="bm25")[0].title == "Radar spares"


def test_a_custom_policy_decides_retrieval(tmp_path: Path) -> None:
    policy = tmp_path / "p.cedar"
    policy.write_text(
        '@id("only-legal-collection")\npermit (principal, action == Bastion::Action::"retrieve", resource)\n'
        'when { resource in Bastion::Collection::"kb" && principal.name == "bob" };\n'
    )
    _store(tmp_path).close()  # makes collection kb under the default policy
    config = tmp_path / "bastion.toml"
    config.write_text(
        config_text(tmp_path / "rag.db").replace("[policy]\n", f'[policy]\naccess = "{policy}"\n')
    )
    store = RagStore.open(config, embedder=embedder())
    doc = tmp_path / "x.md"
    doc.write_text(SECRET)
    store.ingest("kb", doc, classification="top-secret", groups=["nobody"])
    assert store.search("kb", "NIGHTJAR", principal=BOB)  # the policy, not the default rule, decides
    assert store.search("kb", "NIGHTJAR", principal=TESS) == []
    # A reload takes effect on the next search (cached decisions and permitted rows are dropped).
    policy.write_text(policy.read_text().replace('"bob"', '"tess"'))
    store.policy.reload()
    assert store.search("kb", "NIGHTJAR", principal=BOB) == []
    assert store.search("kb", "NIGHTJAR", principal=TESS)


def test_bad_search_arguments_are_usage_errors(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for kwargs in ({"k": 0}, {"k": 101}, {"mode": "fuzzy"}):
        with pytest.raises(UsageError):
            store.search("kb", "x", principal=BOB, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        store.search("kb", "   ", principal=BOB)
    with pytest.raises(NotFound, match="kbb"):
        store.search("kbb", "x", principal=BOB)
    with pytest.raises(UsageError):
        store.create_collection("kb")
    with pytest.raises(UsageError):
        store.create_collection("bad name/..")


def test_offsets_count_characters_not_bytes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    doc = tmp_path / "intl.md"
    filler = "Ünïcödé façade naïve 東京 🚀 " * 60
    doc.write_text(f"# Note\n\n{filler}\n\nThe KESTREL convoy leaves from Zürich at dawn.\n")
    store.ingest("kb", doc, classification="public", groups=["staff"])
    hit = next(
        h for h in store.search("kb", "KESTREL convoy", principal=BOB, mode="bm25") if "KESTREL" in h.text
    )
    text = store.document_text(hit.document_id, BOB)
    assert text[hit.start : hit.end] == hit.text and hit.start > 0


class _Entries:
    """An audit sink that keeps what it is given (the gateway passes its own log here)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, object], str | None]] = []

    def record(
        self,
        action: str,
        details: dict[str, object],
        before_digest: str | None = None,
        after_digest: str | None = None,
    ) -> None:
        self.entries.append((action, details, before_digest))


def test_admin_actions_go_to_the_given_audit_sink(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text(config_text(tmp_path / "rag.db", audit=True))  # enabled, never initialised
    sink = _Entries()
    store = RagStore.open(config, embedder=embedder(), audit=sink)
    store.create_collection("kb")
    doc = tmp_path / "a.md"
    doc.write_text(SECRET)
    report = store.ingest("kb", doc, classification="secret", groups=["intel"])
    assert report.files[0].document_id
    store.delete_document("kb", report.files[0].document_id)
    actions = [a for a, _, _ in sink.entries]
    assert actions == ["rag.collection.create", "rag.ingest", "rag.document.delete"]
    assert sink.entries[2][2] == "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()
