"""Red-team attacks on the retrieval core (``RagStore``) by a writer to a collection's folder and by a
second process writing the same database while a search runs (a sibling worker or ``bastion rag``).

Both attacks once worked:

- ``test_a_symlink_in_an_ingested_folder_is_not_ingested``: a folder walk followed symlinks. Whoever
  can write into a shared drop folder (labelled public by its ``folder.meta.toml``) could plant
  ``notes.md -> /elsewhere/plan.md`` and have a file they cannot read themselves ingested under the
  drop folder's label; a link to a restricted document *inside* the same tree even relabelled that
  document, because its id is derived from the resolved path while its label came from the link's
  folder.
- ``test_relabels_and_deletes_by_another_process_reach_a_searching_process``: a BM25 search tokenised
  the query through a temp table and left that implicit transaction open, pinning the connection to
  its snapshot. After one hybrid search a gateway never saw a relabel or delete written by another
  process (``bastion rag``, a sibling worker) again: a document relabelled secret, or deleted, kept
  being served to the uncleared (and the WAL could not be checkpointed).
- ``test_a_chunk_row_reused_during_a_search_is_not_returned``: a search picks rows from the in-memory
  index, then reads their text by rowid. SQLite reuses the highest rowids after a delete, so a
  document deleted and a restricted one ingested by another process in between (while the query was
  being embedded) handed the restricted chunk's text to an uncleared reader under the deleted
  document's title.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from bastion.embeddings import EmbeddingResult, MiniLMEmbedder
from bastion.rag import RagStore
from bastion.rag.ingest import document_id
from tests.rag.corpus import BOB, TESS, config_text, embedder

SECRET_TEXT = (
    "# Operation Nightfall\n\nThe Nightfall convoy leaves the Ravenscar depot at dawn with the reserve"
    " fuel. Only the brigade commander holds the Ravenscar route card."
)
PUBLIC_TEXT = "# Canteen hours\n\nThe canteen opens at eight and closes at three; soup on Fridays."


def _store(tmp: Path, db: str = "rag.db", emb: MiniLMEmbedder | None = None) -> RagStore:
    config = tmp / "bastion.toml"
    config.write_text(config_text(tmp / db), encoding="utf-8")
    return RagStore.open(config, embedder=emb or embedder())


def _leaked(store: RagStore) -> list[str]:
    texts = []
    for mode in ("hybrid", "bm25", "vector"):
        hits = store.search("kb", "Nightfall convoy Ravenscar route card", principal=BOB, k=10, mode=mode)
        texts += [h.title + " " + h.text for h in hits if "ravenscar" in (h.title + h.text).lower()]
    return texts


def test_a_symlink_in_an_ingested_folder_is_not_ingested(tmp_path: Path) -> None:
    outside = tmp_path / "vault"
    outside.mkdir()
    (outside / "plan.md").write_text(SECRET_TEXT, encoding="utf-8")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "folder.meta.toml").write_text('classification = "public"\ngroups = ["staff"]\n', encoding="utf-8")
    (drop / "canteen.md").write_text(PUBLIC_TEXT, encoding="utf-8")
    (drop / "notes.md").symlink_to(outside / "plan.md")
    (drop / "linked").symlink_to(outside, target_is_directory=True)
    store = _store(tmp_path)
    try:
        store.create_collection("kb")
        report = store.ingest("kb", drop)
        by_name = {Path(f.path).name: f for f in report.files}
        assert by_name["canteen.md"].status == "ingested"
        assert by_name["notes.md"].status == "failed"
        assert "symlink" in by_name["notes.md"].error["message"]  # type: ignore[index]
        assert not [f for f in report.files if f.status in ("ingested", "replaced") and "plan" in f.path]
        assert _leaked(store) == []
        assert store.show("kb").documents == 1
    finally:
        store.close()


def test_a_symlink_cannot_relabel_a_restricted_document_of_the_same_tree(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "intel").mkdir(parents=True)
    (root / "zz-drop").mkdir()
    (root / "intel" / "folder.meta.toml").write_text('classification = "secret"\ngroups = ["intel"]\n')
    (root / "zz-drop" / "folder.meta.toml").write_text('classification = "public"\ngroups = ["staff"]\n')
    (root / "intel" / "plan.md").write_text(SECRET_TEXT, encoding="utf-8")
    # sorts after intel/plan.md, so it is walked second: it used to relabel the secret document public
    (root / "zz-drop" / "plan-copy.md").symlink_to(root / "intel" / "plan.md")
    store = _store(tmp_path)
    try:
        store.create_collection("kb")
        store.ingest("kb", root)
        (doc,) = store.show("kb").document_list
        assert (doc.classification, doc.groups) == ("secret", ("intel",))
        assert _leaked(store) == []
        assert store.search("kb", "Ravenscar route card", principal=TESS, k=3)[0].document_id == doc.id
    finally:
        store.close()


class _Interleaved:
    """The real encoder, with another writer's work run just before the query is embedded: the window in
    which a sibling worker or ``bastion rag`` may change the database under a running search."""

    def __init__(self, real: MiniLMEmbedder, before_query: Callable[[], None]) -> None:
        self._real = real
        self._before_query = before_query
        self.fired = False

    @property
    def dimensions(self) -> int:
        return self._real.dimensions

    @property
    def digest(self) -> str:
        return self._real.digest

    def embed(self, texts: Sequence[str], **kwargs: int) -> EmbeddingResult:
        if not self.fired:
            self.fired = True
            self._before_query()
        return self._real.embed(texts, **kwargs)


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Path, RagStore]]:
    (tmp_path / "pub").mkdir()
    (tmp_path / "sec").mkdir()
    (tmp_path / "pub" / "canteen.md").write_text(PUBLIC_TEXT, encoding="utf-8")
    (tmp_path / "sec" / "plan.md").write_text(SECRET_TEXT, encoding="utf-8")
    writer = _store(tmp_path)
    writer.create_collection("kb")
    assert writer.ingest("kb", tmp_path / "pub", classification="public", groups=["staff"]).files[0].chunks == 1
    yield tmp_path, writer
    writer.close()


def test_a_chunk_row_reused_during_a_search_is_not_returned(two_processes: tuple[Path, RagStore]) -> None:
    tmp, writer = two_processes

    def other_worker() -> None:
        # delete the newest (public) document, then ingest a secret one: its chunk takes the freed rowid
        writer.delete_document("kb", document_id("kb", str((tmp / "pub" / "canteen.md").resolve())))
        writer.ingest("kb", tmp / "sec", classification="secret", groups=["intel"])

    racing = _Interleaved(embedder(), other_worker)
    reader = _store(tmp, emb=cast(MiniLMEmbedder, racing))
    try:
        hits = reader.search("kb", "Nightfall convoy Ravenscar route card", principal=BOB, k=10, mode="vector")
        assert racing.fired
        assert [h.text for h in hits if "Ravenscar" in h.text] == []
        assert hits == []  # the only document BOB could read is gone
        # the cleared reader does find it once the search starts after the write (the test can fail)
        found = reader.search("kb", "Ravenscar route card", principal=TESS, k=3, mode="vector")
        assert "Ravenscar" in found[0].text
    finally:
        reader.close()


def test_a_document_relabelled_during_a_search_is_not_returned(two_processes: tuple[Path, RagStore]) -> None:
    tmp, writer = two_processes

    def other_worker() -> None:
        # the same bytes under a stricter label: an UPDATE of the document row, its chunks untouched
        report = writer.ingest("kb", tmp / "pub", classification="secret", groups=["intel"])
        assert report.files[0].status == "relabelled"

    racing = _Interleaved(embedder(), other_worker)
    reader = _store(tmp, emb=cast(MiniLMEmbedder, racing))
    try:
        assert reader.search("kb", "When does the canteen open?", principal=BOB, k=10, mode="hybrid") == []
        assert racing.fired
        assert "canteen" in reader.search("kb", "When does the canteen open?", principal=TESS, k=1)[0].text
    finally:
        reader.close()


def test_relabels_and_deletes_by_another_process_reach_a_searching_process(
    two_processes: tuple[Path, RagStore],
) -> None:
    tmp, writer = two_processes
    reader = _store(tmp)
    question = "When does the canteen open?"
    try:
        for mode in ("hybrid", "bm25", "vector"):
            assert len(reader.search("kb", question, principal=BOB, k=5, mode=mode)) == 1
        writer.ingest("kb", tmp / "pub", classification="secret", groups=["intel"])  # e.g. 'bastion rag'
        for mode in ("hybrid", "bm25", "vector"):
            assert reader.search("kb", question, principal=BOB, k=5, mode=mode) == [], mode
        assert len(reader.search("kb", question, principal=TESS, k=5)) == 1
        writer.delete_document("kb", reader.search("kb", question, principal=TESS, k=1)[0].document_id)
        assert reader.search("kb", question, principal=TESS, k=5) == []
    finally:
        reader.close()


def test_a_sidecar_dropped_beside_a_document_cannot_declassify_it(tmp_path: Path) -> None:
    # A writer to the ingested folder drops `plan.md.meta.toml` saying public: the operator ingested the
    # folder as secret, and the flag is a floor, so the document stays secret (it used to become public).
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "plan.md").write_text("# Plan\n\nThe NIGHTJAR convoy leaves at dawn from the northern depot.\n")
    (docs / "plan.md.meta.toml").write_text('classification = "public"\n', encoding="utf-8")
    store = _store(tmp_path)
    try:
        store.create_collection("kb")
        (got,) = store.ingest("kb", docs, classification="secret", groups=["intel"]).files
        assert (got.status, got.classification) == ("ingested", "secret")
        # a label file may still raise a document above the flag
        (docs / "plan.md.meta.toml").write_text('classification = "top-secret"\n', encoding="utf-8")
        (raised,) = store.ingest("kb", docs, classification="secret", groups=["intel"]).files
        assert raised.classification == "top-secret"
    finally:
        store.close()
