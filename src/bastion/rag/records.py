"""Plain data that retrieval hands out: hits, documents, collections and ingestion reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``start``/``end`` are character offsets into the document's extracted text
    (``document_text``), so ``text == document_text(document_id)[start:end]``."""

    chunk_id: str
    chunk_sha256: str
    document_id: str
    collection: str
    title: str
    source_name: str
    start: int
    end: int
    text: str
    score: float
    #: the document's classification (0 public ... 3 top secret): what a model must be cleared to see
    classification: int = 0

    def to_json(self) -> dict[str, Any]:
        """The hit as a plain mapping."""
        return asdict(self)


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document's record (not its text)."""

    id: str
    collection: str
    title: str
    source_name: str
    kind: str
    sha256: str
    classification: str
    groups: tuple[str, ...]
    label_source: str
    chunks: int
    chars: int
    ingested_at: str

    def to_json(self) -> dict[str, Any]:
        """The document as a plain mapping."""
        return {**asdict(self), "groups": list(self.groups)}


@dataclass(frozen=True)
class CollectionInfo:
    """A collection and what it holds (for the principal who asked, when one did)."""

    name: str
    description: str
    created_at: str
    documents: int
    chunks: int
    document_list: tuple[DocumentInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The collection as a plain mapping."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "documents": self.documents,
            "chunks": self.chunks,
        }
        if self.document_list:
            out["document_list"] = [d.to_json() for d in self.document_list]
        return out


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: ``ingested``, ``replaced``, ``relabelled``, ``skipped`` or ``failed``."""

    path: str
    status: str
    document_id: str | None = None
    chunks: int = 0
    classification: str | None = None
    groups: tuple[str, ...] = ()
    label_source: str = ""
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as a plain mapping."""
        return {**asdict(self), "groups": list(self.groups)}


@dataclass(frozen=True)
class IngestReport:
    """Outcome of ``ingest``: one entry per file, in path order, and totals."""

    collection: str
    files: tuple[FileOutcome, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """How many files ended with ``status``."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        """The files that could not be ingested (each with its error)."""
        return tuple(f for f in self.files if f.status == "failed")

    @property
    def chunks(self) -> int:
        """Chunks written by this ingest."""
        return sum(f.chunks for f in self.files if f.status in ("ingested", "replaced"))

    def to_json(self) -> dict[str, Any]:
        """The report as a plain mapping."""
        return {
            "collection": self.collection,
            "ingested": self.count("ingested"),
            "replaced": self.count("replaced"),
            "relabelled": self.count("relabelled"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "files": [f.to_json() for f in self.files],
        }
