"""The retrieval database: collections, documents (with their extracted text), chunks, FTS5, vectors.

Chunks keep offsets, not text: a chunk's text is ``documents.text[start:end]``, so a citation can
always be checked against the stored document. FTS5 holds its own copy of each chunk's text (rowid =
``chunks.id``) for BM25; vectors are float32 blobs on the chunk row. ``state.generation`` goes up on
every write so a process can tell that its in-memory vector matrix is stale.
"""

from __future__ import annotations

import sqlite3

from bastion.store import Connection, Migrations

MIGRATIONS = Migrations("rag")

#: FTS5 tokenizer: Porter stemming over Unicode words with diacritics folded ("cells" finds "cell")
TOKENIZER = "porter unicode61 remove_diacritics 2"


@MIGRATIONS
def m001_collections_documents_chunks(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE rag_collections ("
        " name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',"
        " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
    )
    conn.execute(
        "CREATE TABLE rag_documents ("
        " id TEXT PRIMARY KEY,"
        " collection TEXT NOT NULL REFERENCES rag_collections(name) ON DELETE CASCADE,"
        " source TEXT NOT NULL,"  # where it was ingested from (absolute path or given name)
        " source_name TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " classification INTEGER NOT NULL, groups TEXT NOT NULL, label_source TEXT NOT NULL,"
        " text TEXT NOT NULL, chunking TEXT NOT NULL, embedder TEXT NOT NULL,"
        " ingested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
        " UNIQUE (collection, source))"
    )
    conn.execute(
        "CREATE TABLE rag_chunks ("
        " id INTEGER PRIMARY KEY,"
        " chunk_id TEXT NOT NULL UNIQUE,"
        " document_id TEXT NOT NULL REFERENCES rag_documents(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL, tokens INTEGER NOT NULL, vector BLOB NOT NULL)"
    )
    conn.execute("CREATE INDEX rag_chunks_document ON rag_chunks(document_id)")
    conn.execute(f"CREATE VIRTUAL TABLE rag_fts USING fts5(text, tokenize = '{TOKENIZER}')")
    # 'instance' rows are (term, doc, col, offset): term frequencies per chunk, looked up by term,
    # from which BM25 is computed over the chunks a principal may read (see bm25.py).
    conn.execute("CREATE VIRTUAL TABLE rag_fts_terms USING fts5vocab(rag_fts, instance)")
    conn.execute("CREATE TABLE rag_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO rag_state VALUES ('generation', 0)")


def bump_generation(conn: sqlite3.Connection) -> None:
    """Record that chunks changed (call inside the writing transaction)."""
    conn.execute("UPDATE rag_state SET value = value + 1 WHERE key = 'generation'")


def generation(conn: sqlite3.Connection) -> int:
    """The current write generation."""
    row = conn.execute("SELECT value FROM rag_state WHERE key = 'generation'").fetchone()
    return int(row[0])
