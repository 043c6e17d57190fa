"""Retrieval over the organisation's documents, with Cedar deciding per document inside the search.

``RagStore.open(settings)`` opens the collections database; ``ingest`` reads Markdown, text, HTML, PDF
and DOCX files with their classification and groups; ``search(collections, query, principal=...)``
returns ``Hit``s ranked by BM25 (SQLite FTS5), all-MiniLM-L6-v2 vectors, or both fused (z-scores) —
always over the documents Cedar lets that principal ``retrieve``, nothing else.
"""

from bastion.rag.chunk import Chunk, chunk_text
from bastion.rag.labels import FOLDER_RULE, SIDECAR_SUFFIX
from bastion.rag.parse import Extracted, extract
from bastion.rag.records import CollectionInfo, DocumentInfo, FileOutcome, Hit, IngestReport
from bastion.rag.search import MODES
from bastion.rag.store import MAX_K, RagStore

__all__ = [
    "FOLDER_RULE",
    "MAX_K",
    "MODES",
    "SIDECAR_SUFFIX",
    "Chunk",
    "CollectionInfo",
    "DocumentInfo",
    "Extracted",
    "FileOutcome",
    "Hit",
    "IngestReport",
    "RagStore",
    "chunk_text",
    "extract",
]
