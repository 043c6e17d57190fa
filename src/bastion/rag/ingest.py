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
from pathlib import Path

import numpy as np

from bastion.embeddings import MiniLMEmbedder
from bastion.errors import BastionError, NotFound
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


def _failed(file: Path, exc: BastionError) -> FileOutcome:
    return FileOutcome(str(file), "failed", error=exc.to_json())


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
    outcomes = []
    for file in files:
        if not supported(file):
            if path.is_dir():
                outcomes.append(FileOutcome(str(file), "ignored"))
                continue
        try:
            outcomes.append(
                _ingest_file(
                    conn,
                    lock,
                    embedder,
                    collection,
                    file,
                    root,
                    classification=classification,
                    groups=groups,
                    source_name=source_name,
                    chunk_chars=chunk_chars,
                    overlap=overlap,
                )
            )
        except BastionError as exc:
            outcomes.append(_failed(file, exc))
    return IngestReport(collection, tuple(outcomes), time.perf_counter() - began)


def _ingest_file(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    embedder: Callable[[], MiniLMEmbedder],
    collection: str,
    file: Path,
    root: Path,
    *,
    classification: str | None,
    groups: tuple[str, ...],
    source_name: str | None,
    chunk_chars: int,
    overlap: int,
) -> FileOutcome:
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
    chunking = f"{chunk_chars}/{overlap}"
    same_text = old is not None and old[0] == digest and old[1] == chunking
    if same_text:
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
    chunks = chunk_text(extracted.text, chunk_chars, overlap)
    model = embedder()
    vectors = model.embed([c.text for c in chunks]).vectors if chunks else np.zeros((0, model.dimensions))
    with lock, conn:
        if old is not None:
            delete_document_rows(conn, doc_id)
        write_document(
            conn,
            collection,
            doc_id,
            source,
            Path(source_name or file.name).name,
            digest,
            labels,
            extracted,
            chunks,
            vectors,
            chunking,
            model.digest,
        )
        bump_generation(conn)
    return _outcome(file, "replaced" if old is not None else "ingested", doc_id, len(chunks), labels)


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
