"""The in-memory side of the index: every chunk's vector, document and length, in rowid order.

Loaded from SQLite once and reloaded when the database's write generation changes (another process
ingested or deleted). Searching then needs no per-query SQL for vectors: the rows a principal may read
are selected with a boolean mask over ``doc_of`` and only those rows are scored.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bastion.policy import DocumentResource


@dataclass(frozen=True)
class DocMeta:
    """What search needs to know about a document without reading its text."""

    resource: DocumentResource
    title: str
    source_name: str


@dataclass(frozen=True)
class Index:
    """Vectors and per-chunk facts, row i describing the chunk whose rowid is ``rowids[i]``."""

    generation: int
    rowids: npt.NDArray[np.int64]
    doc_of: npt.NDArray[np.int32]  # index into ``docs``
    tokens: npt.NDArray[np.float32]  # chunk length in words, for BM25 length normalisation
    vectors: npt.NDArray[np.float32]  # [n, dims], unit length
    docs: tuple[DocMeta, ...]

    def rows_for(self, rowids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Row positions of chunk ``rowids`` (all of which must be in the index)."""
        return np.searchsorted(self.rowids, rowids).astype(np.int64)

    def readable_rows(self, collections: set[str], readable_docs: set[str]) -> npt.NDArray[np.bool_]:
        """Mask of rows whose document is in ``collections`` and in ``readable_docs``."""
        ok = np.fromiter(
            (d.resource.id in readable_docs and d.resource.collection in collections for d in self.docs),
            dtype=np.bool_,
            count=len(self.docs),
        )
        if not len(self.docs):
            return np.zeros(len(self.rowids), dtype=np.bool_)
        return ok[self.doc_of]


def load_index(conn: sqlite3.Connection, generation: int, dims: int) -> Index:
    """Read every document's metadata and every chunk's vector (rowid order)."""
    docs: list[DocMeta] = []
    position: dict[str, int] = {}
    for doc_id, collection, title, source_name, classification, groups in conn.execute(
        "SELECT id, collection, title, source_name, classification, groups FROM rag_documents ORDER BY id"
    ):
        position[doc_id] = len(docs)
        resource = DocumentResource(doc_id, collection, int(classification), frozenset(json.loads(groups)))
        docs.append(DocMeta(resource, title, source_name))
    rows = conn.execute("SELECT id, document_id, tokens, vector FROM rag_chunks ORDER BY id").fetchall()
    n = len(rows)
    rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    doc_of = np.fromiter((position[r[1]] for r in rows), dtype=np.int32, count=n)
    tokens = np.fromiter((r[2] for r in rows), dtype=np.float32, count=n)
    vectors = np.empty((n, dims), dtype=np.float32)
    for i, r in enumerate(rows):
        vectors[i] = np.frombuffer(r[3], dtype=np.float32)
    return Index(generation, rowids, doc_of, tokens, vectors, tuple(docs))
