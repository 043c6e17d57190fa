"""Uploaded files (``/v1/files``) and which vector store each was attached to, as OpenAI's SDK expects.

An upload is kept as the uploader sent it (``<store folder>/files/<id>``, written whole or not at all)
with one row in ``store.path``; it carries no classification yet and only the key that uploaded it sees
it. Attaching it to a vector store (:mod:`bastion.serve.vector_stores`) ingests it into the collection
of that name, with the classification and groups taken from the attachment's ``attributes``; the row
below remembers which document that made, so deleting the file removes the document too.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.errors import NotFound, UnusableInput
from bastion.signing.keys import write_atomic
from bastion.store import Connection, ConstraintViolation, Migrations, Target, open_database

MIGRATIONS = Migrations("openai_files")

#: what the retrieval core reads, by extension; checked at upload so a wrong file fails early
EXTENSIONS = (".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf", ".docx")
#: the first bytes each binary format must start with (a PDF header; DOCX is a ZIP container)
MAGIC = {".pdf": b"%PDF-", ".docx": b"PK\x03\x04"}
#: longest uploaded file name kept (bytes of UTF-8): it is a file name on disk, temp prefix included
MAX_NAME_BYTES = 200
PURPOSES = ("assistants", "user_data", "batch", "fine-tune", "vision", "evals")


@MIGRATIONS
def create_files(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE openai_files (id TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT NOT NULL,"
        " purpose TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at INTEGER NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE openai_vector_store_files (vector_store_id TEXT NOT NULL, file_id TEXT NOT NULL"
        " REFERENCES openai_files(id) ON DELETE CASCADE, document_id TEXT NOT NULL, owner TEXT NOT NULL,"
        " attributes TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        " PRIMARY KEY (vector_store_id, file_id))"
    )


@MIGRATIONS
def vector_store_owners(conn: Connection) -> None:
    # Who created each vector store over HTTP: only that key (or an administrator) may add files to it.
    # A collection made with `bastion rag create` has no row: over HTTP, only administrators write to it.
    conn.execute(
        "CREATE TABLE openai_vector_stores (id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " created_at INTEGER NOT NULL)"
    )


@dataclass(frozen=True)
class FileRecord:
    """One uploaded file, as ``GET /v1/files/{id}`` shows it."""

    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    sha256: str
    created_at: int

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(frozen=True)
class Attachment:
    """A file attached to a vector store: the document its ingestion made and the attributes it carried."""

    vector_store_id: str
    file_id: str
    document_id: str
    owner: str
    attributes: dict[str, Any]
    bytes: int
    created_at: int

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``vector_store.file`` object (with the document id the citations name)."""
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "created_at": self.created_at,
            "vector_store_id": self.vector_store_id,
            "status": "completed",
            "last_error": None,
            "usage_bytes": self.bytes,
            "attributes": self.attributes,
            "chunking_strategy": {"type": "other"},
            "document_id": self.document_id,
        }


def check_upload(filename: str, data: bytes) -> None:
    """Refuse, naming the file, what the retrieval core cannot read (by extension and first bytes)."""
    suffix = Path(filename).suffix.lower()
    if not data:
        raise UnusableInput(
            f"uploaded file {filename!r} is empty", hint="Upload a file with content.", param="file"
        )
    if suffix not in EXTENSIONS:
        raise UnusableInput(
            f"uploaded file {filename!r}: extension {suffix or '(none)'!r} is not a type Bastion reads",
            hint=f"Upload one of {', '.join(EXTENSIONS)} (give the file name its real extension).",
            param="file",
        )
    magic = MAGIC.get(suffix)
    if magic is not None and not data.startswith(magic):
        kind = suffix.lstrip(".").upper()
        raise UnusableInput(
            f"uploaded file {filename!r} is not a {kind} file (it does not start with {kind}'s signature)",
            hint=f"Upload the real {kind} file, or rename it to its real type.",
            param="file",
        )


class FileStore:
    """Uploaded files (bytes on disk, rows in SQLite) and their vector-store attachments."""

    def __init__(self, db: Target, folder: Path) -> None:
        self.folder = folder
        self._conn = open_database(db, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def path(self, record: FileRecord) -> Path:
        """Where ``record``'s bytes are: a folder of its own, under the name it was uploaded with (the
        retrieval core takes the title, parser and source from it, and no other upload shares it)."""
        return self.folder / record.id / record.filename

    def add(self, owner: str, filename: str, purpose: str, data: bytes) -> FileRecord:
        """Keep an upload (checked with :func:`check_upload`); the bytes are durable before the row."""
        name = Path(filename.replace("\\", "/")).name  # a client-sent name, never a path
        if name in ("", ".", "..") or name.startswith(".") or "\x00" in name:
            raise UnusableInput(
                f"uploaded file name {filename!r} is not usable",
                hint="Name the file, e.g. report.pdf.",
                param="file",
            )
        if len(name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            # The name becomes a file name on disk (and its temp file's, longer still): past the file
            # system's 255 bytes the write failed with an error naming the server's folders.
            raise UnusableInput(
                f"uploaded file name is longer than {MAX_NAME_BYTES} bytes ({name[:40]}...)",
                hint="Give the file a shorter name, keeping its extension.",
                param="file",
            )
        check_upload(name, data)
        record = FileRecord(
            "file-" + secrets.token_hex(12),
            owner,
            name,
            purpose,
            len(data),
            hashlib.sha256(data).hexdigest(),
            int(time.time()),
        )
        write_atomic(self.path(record), data, 0o600)
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "INSERT INTO openai_files VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, owner, record.filename, purpose, record.bytes, record.sha256, record.created_at),
            )
        return record

    def get(self, file_id: str, owners: Sequence[str]) -> FileRecord:
        """The file ``file_id`` if one of ``owners`` (a key and the keys it replaced) uploaded it; NotFound
        for anyone else's (its existence is not theirs to learn)."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT * FROM openai_files WHERE id = ? AND owner IN ({_marks(owners)})",  # noqa: S608
                (file_id, *owners),
            ).fetchone()
        if row is None:
            raise NotFound(
                f"no file {file_id!r}", hint="List your files with GET /v1/files.", param="file_id"
            )
        return FileRecord(*row)

    def owned(self, owners: Sequence[str], purpose: str | None = None) -> list[FileRecord]:
        """The files ``owners`` (a key and the keys it replaced) uploaded, newest first."""
        where = f"owner IN ({_marks(owners)})" + ("" if purpose is None else " AND purpose = ?")
        args = (*owners,) if purpose is None else (*owners, purpose)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM openai_files WHERE {where} ORDER BY created_at DESC, id", args  # noqa: S608
            )
            return [FileRecord(*r) for r in rows.fetchall()]

    def delete(self, record: FileRecord) -> list[Attachment]:
        """Forget ``record`` and its bytes; returns the attachments it had (their documents go too)."""
        with self._lock:
            gone = self._attachments("file_id = ?", (record.id,))
            with self._conn.transaction():
                self._conn.execute("DELETE FROM openai_files WHERE id = ?", (record.id,))
        self.path(record).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path(record).parent.rmdir()
        return gone

    def own_store(self, vector_store_id: str, owner: str) -> None:
        """Record that ``owner`` (a key id) created ``vector_store_id``."""
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "INSERT INTO openai_vector_stores (id, owner, created_at) VALUES (?, ?, ?)",
                (vector_store_id, owner, int(time.time())),
            )

    def store_owner(self, vector_store_id: str) -> str | None:
        """The key id that created ``vector_store_id`` over HTTP (None: made by the operator's CLI)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT owner FROM openai_vector_stores WHERE id = ?", (vector_store_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def forget_store(self, vector_store_id: str) -> None:
        """Drop the owner record of a deleted vector store."""
        with self._lock, self._conn.transaction():
            self._conn.execute("DELETE FROM openai_vector_stores WHERE id = ?", (vector_store_id,))

    def attach(
        self, record: FileRecord, vector_store_id: str, document_id: str, attributes: dict[str, Any]
    ) -> Attachment:
        """Record that ``record`` was ingested into ``vector_store_id`` as ``document_id``; NotFound when
        the file was deleted meanwhile (its row is the foreign key: the check and the insert are one)."""
        attachment = Attachment(
            vector_store_id, record.id, document_id, record.owner, attributes, record.bytes, int(time.time())
        )
        try:
            self._insert_attachment(record, attachment)
        except ConstraintViolation as exc:
            raise NotFound(
                f"no file {record.id!r}: it was deleted while it was being attached",
                hint="Upload the file again and attach the new id.",
                param="file_id",
            ) from exc
        return attachment

    def _insert_attachment(self, record: FileRecord, attachment: Attachment) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute(  # re-attaching replaces the row (portable: no INSERT OR REPLACE)
                "DELETE FROM openai_vector_store_files WHERE vector_store_id = ? AND file_id = ?",
                (attachment.vector_store_id, record.id),
            )
            self._conn.execute(
                "INSERT INTO openai_vector_store_files VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    attachment.vector_store_id,
                    record.id,
                    attachment.document_id,
                    record.owner,
                    orjson.dumps(attachment.attributes).decode(),
                    record.bytes,
                    attachment.created_at,
                ),
            )

    def attachment(self, vector_store_id: str, file_id: str) -> Attachment | None:
        """The attachment of ``file_id`` to ``vector_store_id``, if any."""
        with self._lock:
            found = self._attachments("vector_store_id = ? AND file_id = ?", (vector_store_id, file_id))
        return found[0] if found else None

    def by_document(self, vector_store_id: str) -> dict[str, Attachment]:
        """The attachments of ``vector_store_id`` by document id."""
        with self._lock:
            return {a.document_id: a for a in self._attachments("vector_store_id = ?", (vector_store_id,))}

    def detach(self, vector_store_id: str, file_id: str) -> None:
        """Forget the attachment (the caller deletes the document)."""
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "DELETE FROM openai_vector_store_files WHERE vector_store_id = ? AND file_id = ?",
                (vector_store_id, file_id),
            )

    def _attachments(self, where: str, args: tuple[str, ...]) -> list[Attachment]:
        # ``where`` is one of this module's fixed clauses; values are bound parameters
        columns = "vector_store_id, file_id, document_id, owner, attributes, bytes, created_at"
        sql = f"SELECT {columns} FROM openai_vector_store_files WHERE {where} ORDER BY created_at, file_id"  # noqa: S608
        rows = self._conn.execute(sql, args).fetchall()
        return [Attachment(r[0], r[1], r[2], r[3], orjson.loads(r[4]), r[5], r[6]) for r in rows]


def _marks(values: Sequence[str]) -> str:
    """``?, ?, ?`` for an ``IN`` list of ``values`` (never empty: a key has at least its own id)."""
    if not values:
        raise ValueError("an owner list is never empty")
    return ", ".join("?" * len(values))
