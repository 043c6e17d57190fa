"""Ingest files into a collection: read, label, parse, chunk, embed, then write in one transaction.

Per file, in this order: bytes and digest -> labels (sidecar, folder rule, flags) -> skip if the same
bytes, chunking and labels are already stored -> parse -> chunk -> embed (outside any transaction,
it is the slow part) -> one transaction replacing the document's rows. A file that fails at any step
is reported with its error (file, problem, fix) and leaves the collection as it was; the next file is
ingested all the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bastion.embeddings import MiniLMEmbedder
from bastion.errors import BastionError, NotFound, UnusableInput
from bastion.rag.chunk import Chunk, chunk_text
from bastion.rag.labels import FOLDER_RULE, SIDECAR_SUFFIX, Labels, labels_for
from bastion.rag.parse import MAX_FILE_BYTES, Extracted, extract, supported
from bastion.rag.records import FileOutcome, IngestReport
from bastion.rag.schema import bump_generation

_WORD = re.compile(r"[^\W_]+")


def document_id(collection: str, source: str) -> str:
    """Stable id of the document ingested from ``source`` into ``collection`` (same on re-ingest)."""
    return "doc_" + hashlib.sha256(f"{collection}\0{source}".encode()).hexdigest()[:24]


def delete_document_rows(conn: sqlite3.Connection, doc_id: str) -> None:
    """Delete a document's FTS rows, chunks and vectors and the document (inside a transaction)."""
    conn.execute(
        "DELETE FROM rag_fts WHERE rowid IN (SELECT id FROM rag_chunks WHERE document_id = ?)", (doc_id,)
    )
    conn.execute("DELETE FROM rag_documents WHERE id = ?", (doc_id,))  # chunks cascade


def files_under(path: Path) -> tuple[Path, list[Path]]:
    """(root for folder rules, files to ingest): the file itself, or every file under a folder in path
    order, hidden files and label files left out."""
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise NotFound(f"{path} does not exist", hint="Give a file or a folder of documents.")
    files = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).parts
        if not f.is_file() or any(p.startswith(".") for p in rel):
            continue
        if f.name.endswith(SIDECAR_SUFFIX) or f.name == FOLDER_RULE:
            continue
        files.append(f)
    return path, files


def _linked(file: Path, root: Path) -> bool:
    """True when ``file`` found in a walk of ``root`` is a symlink or lies under one.

    A folder walk never follows links: whoever may write into the folder could otherwise have a file
    they cannot read ingested under the folder's label, or, linking to a document of the same tree,
    relabel it (its id comes from the real path, its label from where the link sits).
    """
    return file.resolve() != root.resolve() / file.relative_to(root)


def _symlink_error(file: Path) -> UnusableInput:
    return UnusableInput(
        f"{file}: is a symlink (or under one); a folder is ingested without following symlinks",
        hint="Copy the document into the folder, or ingest its real path on its own.",
    )


def _failed(file: Path, exc: BastionError) -> FileOutcome:
    return FileOutcome(str(file), "failed", error=exc.to_json())


#: chunks embedded per encoder call across files: many small files otherwise run the encoder one or
#: two texts at a time, which is several times slower per chunk than full batches
EMBED_BATCH = 64


@dataclass(frozen=True)
class _Pending:
    """A parsed and chunked file waiting for its vectors."""

    file: Path
    doc_id: str
    source: str
    source_name: str
    digest: str
    labels: Labels
    extracted: Extracted
    chunks: list[Chunk]
    replaces: bool


def ingest_path(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    embedder: Callable[[], MiniLMEmbedder],
    collection: str,
    path: Path,
    *,
    classification: str | None,
    groups: tuple[str, ...],
    source_name: str | None,
    chunk_chars: int,
    overlap: int,
) -> IngestReport:
    """Ingest ``path`` (a file, or a folder's supported files) into ``collection``."""
    began = time.perf_counter()
    root, files = files_under(path)
    if source_name is not None and len(files) != 1:
        raise NotFound(f"{path}: a source name applies to one file, not a folder")
    chunking = f"{chunk_chars}/{overlap}"
    outcomes: list[FileOutcome | _Pending] = []
    batch: list[_Pending] = []

    def flush() -> None:
        done = {
            id(p): o
            for p, o in zip(
                batch, _embed_and_write(conn, lock, embedder(), collection, batch, chunking), strict=True
            )
        }
        outcomes[:] = [done.get(id(o), o) if isinstance(o, _Pending) else o for o in outcomes]
        batch.clear()

    for file in files:
        if not supported(file) and path.is_dir():
            outcomes.append(FileOutcome(str(file), "ignored"))
            continue
        if path.is_dir() and _linked(file, root):
            outcomes.append(_failed(file, _symlink_error(file)))
            continue
        try:
            prepared = _prepare(
                conn, lock, collection, file, root, classification, groups, source_name, chunking
            )
        except BastionError as exc:
            outcomes.append(_failed(file, exc))
            continue
        outcomes.append(prepared)
        if isinstance(prepared, _Pending):
            batch.append(prepared)
            if sum(len(p.chunks) for p in batch) >= EMBED_BATCH:
                flush()
    if batch:
        flush()
    final = tuple(o for o in outcomes if isinstance(o, FileOutcome))
    return IngestReport(collection, final, time.perf_counter() - began)


def _prepare(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    collection: str,
    file: Path,
    root: Path,
    classification: str | None,
    groups: tuple[str, ...],
    source_name: str | None,
    chunking: str,
) -> FileOutcome | _Pending:
    """Read, label, skip or relabel, else parse and chunk one file."""
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            data = b"\0" * (MAX_FILE_BYTES + 1)  # let extract() give its size error without reading it
        else:
            data = file.read_bytes()
    except OSError as exc:
        raise NotFound(
            f"{file}: cannot read it ({exc.strerror})", hint="Check the path and permissions."
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    labels = labels_for(file, root, classification, groups)
    source = source_name or str(file.resolve())
    doc_id = document_id(collection, source)
    groups_json = json.dumps(list(labels.groups))
    with lock:
        old = conn.execute(
            "SELECT sha256, chunking, classification, groups FROM rag_documents WHERE id = ?", (doc_id,)
        ).fetchone()
    if old is not None and old[0] == digest and old[1] == chunking:
        n = _chunk_count(conn, lock, doc_id)
        if (old[2], old[3]) == (labels.classification, groups_json):
            return _outcome(file, "skipped", doc_id, n, labels)
        with lock, conn:
            conn.execute(
                "UPDATE rag_documents SET classification = ?, groups = ?, label_source = ? WHERE id = ?",
                (labels.classification, groups_json, labels.source, doc_id),
            )
            bump_generation(conn)
        return _outcome(file, "relabelled", doc_id, n, labels)
    extracted = extract(file, data, source_name)
    size_, overlap = (int(x) for x in chunking.split("/"))
    chunks = chunk_text(extracted.text, size_, overlap)
    name = Path(source_name or file.name).name
    return _Pending(file, doc_id, source, name, digest, labels, extracted, chunks, old is not None)


def _embed_and_write(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    model: MiniLMEmbedder,
    collection: str,
    batch: list[_Pending],
    chunking: str,
) -> list[FileOutcome]:
    """Embed the chunks of ``batch`` in one call, then write each file in its own transaction."""
    texts = [c.text for p in batch for c in p.chunks]
    vectors = model.embed(texts).vectors if texts else np.zeros((0, model.dimensions), dtype=np.float32)
    outcomes = []
    at = 0
    for p in batch:
        mine = vectors[at : at + len(p.chunks)]
        at += len(p.chunks)
        with lock, conn:
            if p.replaces:
                delete_document_rows(conn, p.doc_id)
            write_document(
                conn,
                collection,
                p.doc_id,
                p.source,
                p.source_name,
                p.digest,
                p.labels,
                p.extracted,
                p.chunks,
                mine,
                chunking,
                model.digest,
            )
            bump_generation(conn)
        status = "replaced" if p.replaces else "ingested"
        outcomes.append(_outcome(p.file, status, p.doc_id, len(p.chunks), p.labels))
    return outcomes


def _chunk_count(conn: sqlite3.Connection, lock: threading.RLock, doc_id: str) -> int:
    with lock:
        return int(
            conn.execute("SELECT COUNT(*) FROM rag_chunks WHERE document_id = ?", (doc_id,)).fetchone()[0]
        )


def _outcome(file: Path, status: str, doc_id: str, chunks: int, labels: Labels) -> FileOutcome:
    return FileOutcome(
        str(file), status, doc_id, chunks, labels.classification_name, labels.groups, labels.source
    )


def write_document(
    conn: sqlite3.Connection,
    collection: str,
    doc_id: str,
    source: str,
    source_name: str,
    digest: str,
    labels: Labels,
    extracted: Extracted,
    chunks: list[Chunk],
    vectors: np.ndarray,  # type: ignore[type-arg]
    chunking: str,
    embedder_digest: str,
) -> None:
    """Insert a document, its chunks, FTS rows and vectors (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO rag_documents (id, collection, source, source_name, title, kind, sha256, classification,"
        " groups, label_source, text, chunking, embedder) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            doc_id,
            collection,
            source,
            source_name,
            extracted.title,
            extracted.kind,
            digest,
            labels.classification,
            json.dumps(list(labels.groups)),
            labels.source,
            extracted.text,
            chunking,
            embedder_digest,
        ),
    )
    for chunk, vector in zip(chunks, vectors, strict=True):
        sha = chunk.sha256
        chunk_id = "chk_" + hashlib.sha256(f"{doc_id}\0{chunk.seq}\0{sha}".encode()).hexdigest()[:24]
        cur = conn.execute(
            "INSERT INTO rag_chunks (chunk_id, document_id, seq, start, end, sha256, tokens, vector)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                chunk_id,
                doc_id,
                chunk.seq,
                chunk.start,
                chunk.end,
                sha,
                len(_WORD.findall(chunk.text)),
                np.asarray(vector, dtype=np.float32).tobytes(),
            ),
        )
        conn.execute("INSERT INTO rag_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, chunk.text))
