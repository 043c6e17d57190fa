"""``RagStore``: collections of documents, searched with Cedar deciding per document inside retrieval.

The security contract (issue 16): a search ranks only chunks of documents Cedar lets the principal
``retrieve``. The permitted set is decided first, per document (cached like the request path), and
everything after — BM25 statistics, vector scores, fusion, ``k``, titles, counts — is computed over it
alone. A principal with no permitted document gets an empty list, exactly as for a query that matches
nothing. Writes (ingest, deletes) are one transaction per document and are audited.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bastion import bundled
from bastion.audit import AdminAudit, AuditSink, require_audit
from bastion.config import Settings, load_settings
from bastion.embeddings import MiniLMEmbedder
from bastion.errors import NotFound, UsageError, did_you_mean
from bastion.policy import LEVELS, AccessPolicy, DocumentResource, PrincipalLike
from bastion.rag import bm25, search
from bastion.rag.index import Index, load_index
from bastion.rag.ingest import delete_document_rows, ingest_path
from bastion.rag.records import CollectionInfo, DocumentInfo, Hit, IngestReport
from bastion.rag.schema import MIGRATIONS, bump_generation, generation
from bastion.store.sqlite import open_sqlite

MAX_K = 100
MAX_QUERY_CHARS = 8000
QUERY_CACHE = 1024
#: permitted-row masks kept (one per principal and collection set; ~n_chunks bytes + 8 bytes a row each)
MASK_CACHE = 32
_NAMES = {level: name for name, level in LEVELS.items()}


def _settings(home_or_config: Settings | Path | str | None) -> Settings:
    if isinstance(home_or_config, Settings):
        return home_or_config
    if home_or_config is None:
        return load_settings()
    path = Path(home_or_config).expanduser()
    return load_settings(path / "bastion.toml" if path.is_dir() else path)


class RagStore:
    """Retrieval collections in one SQLite database (``rag.path``), with Cedar inside every search."""

    def __init__(
        self,
        settings: Settings,
        conn: sqlite3.Connection,
        policy: AccessPolicy,
        embedder: MiniLMEmbedder | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self._conn = conn
        self._embedder = embedder
        self._audit: AuditSink = audit if audit is not None else AdminAudit(settings.audit)
        self._own_audit = audit is None
        self._lock = threading.RLock()
        self._index: Index | None = None
        self._query_vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._masks: OrderedDict[
            tuple[str, tuple[str, ...], frozenset[str], int, int],
            tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]],
        ] = OrderedDict()

    @classmethod
    def open(
        cls,
        home_or_config: Settings | Path | str | None = None,
        *,
        policy: AccessPolicy | None = None,
        embedder: MiniLMEmbedder | None = None,
        audit: AuditSink | None = None,
    ) -> RagStore:
        """Open (creating) the database of ``settings.rag.path``. ``policy`` defaults to the configured
        access policy and group clearances (pass the gateway's to share its cache); ``embedder`` is
        loaded on first use when not given; ``audit`` receives the admin entries (default: the
        configured log, opened per entry; the gateway passes its own so one process has one writer)."""
        settings = _settings(home_or_config)
        if policy is None:
            clearance = {group: LEVELS[level] for group, level in settings.policy.clearance.items()}
            policy = AccessPolicy(settings.policy.access, clearance)
        # SQLite only, whatever store.url says: FTS5 and the vectors are local indexes of local files
        conn = open_sqlite(settings.rag.path, MIGRATIONS)
        return cls(settings, conn, policy, embedder, audit)

    def _require_audit(self) -> None:
        """Refuse a write that could not be recorded (before doing it)."""
        if self._own_audit and self.settings.audit.enabled:
            require_audit(self.settings.audit)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    @property
    def embedder(self) -> MiniLMEmbedder:
        """The sentence encoder for chunks and queries (loaded once)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = MiniLMEmbedder.load(bundled.resolve(self.settings.rag.embedder))
            return self._embedder

    # ---- collections -----------------------------------------------------------------------------

    def create_collection(self, name: str, description: str = "") -> CollectionInfo:
        """Create an empty collection (UsageError if the name is taken or malformed)."""
        if not name or len(name) > 128 or not all(c.isalnum() or c in "-_." for c in name):
            raise UsageError(
                f"collection name {name!r} is not allowed",
                hint="Use 1-128 letters, digits, '-', '_' or '.'.",
            )
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        "INSERT INTO rag_collections (name, description) VALUES (?, ?)", (name, description)
                    )
            except sqlite3.IntegrityError as exc:
                raise UsageError(
                    f"collection {name!r} already exists",
                    hint="Pick another name, or ingest into the existing one.",
                ) from exc
        self._audit.record("rag.collection.create", {"collection": name})
        return self.show(name)

    def _require(self, names: Iterable[str]) -> list[str]:
        known = [r[0] for r in self._conn.execute("SELECT name FROM rag_collections ORDER BY name")]
        out = []
        for name in names:
            if name not in known:
                raise NotFound(
                    f"collection {name!r} does not exist",
                    hint=did_you_mean(name, known, "'bastion rag list' shows the collections."),
                    param="collection",
                )
            out.append(name)
        return out

    def list_collections(self, principal: PrincipalLike | None = None) -> list[CollectionInfo]:
        """Every collection with its counts; with ``principal``, counts of what they may read only."""
        with self._lock:
            names = [r[0] for r in self._conn.execute("SELECT name FROM rag_collections ORDER BY name")]
        return [self._info(n, principal, with_documents=False) for n in names]

    def show(self, name: str, principal: PrincipalLike | None = None) -> CollectionInfo:
        """One collection and its documents (only those ``principal`` may read, when given)."""
        with self._lock:
            self._require([name])
        return self._info(name, principal, with_documents=True)

    def _info(self, name: str, principal: PrincipalLike | None, with_documents: bool) -> CollectionInfo:
        with self._lock:
            description, created = self._conn.execute(
                "SELECT description, created_at FROM rag_collections WHERE name = ?", (name,)
            ).fetchone()
            docs = self._documents(name)
        if principal is not None:
            readable = self.policy.readable(principal, [d[0] for d in docs])
            docs = [d for d in docs if d[0].id in readable]
        return CollectionInfo(
            name,
            description,
            created,
            len(docs),
            sum(d[1].chunks for d in docs),
            tuple(d[1] for d in docs) if with_documents else (),
        )

    def _documents(self, collection: str) -> list[tuple[DocumentResource, DocumentInfo]]:
        rows = self._conn.execute(
            "SELECT d.id, d.title, d.source_name, d.kind, d.sha256, d.classification, d.groups,"
            " d.label_source, length(d.text), d.ingested_at,"
            " (SELECT COUNT(*) FROM rag_chunks c WHERE c.document_id = d.id)"
            " FROM rag_documents d WHERE d.collection = ? ORDER BY d.source_name, d.id",
            (collection,),
        ).fetchall()
        out = []
        for doc_id, title, source_name, kind, sha, cls, groups, label_source, chars, at, chunks in rows:
            grp = tuple(json.loads(groups))
            info = DocumentInfo(
                doc_id,
                collection,
                title,
                source_name,
                kind,
                sha,
                _NAMES[cls],
                grp,
                label_source,
                chunks,
                chars,
                at,
            )
            out.append((DocumentResource(doc_id, collection, cls, frozenset(grp)), info))
        return out

    def delete_collection(self, name: str) -> int:
        """Delete a collection with every document, chunk, FTS row and vector in it; returns documents
        removed. Audited."""
        self._require_audit()
        with self._lock:
            self._require([name])
            with self._conn:
                ids = [
                    r[0]
                    for r in self._conn.execute("SELECT id FROM rag_documents WHERE collection = ?", (name,))
                ]
                self._conn.execute(
                    "DELETE FROM rag_fts WHERE rowid IN (SELECT c.id FROM rag_chunks c JOIN rag_documents d"
                    " ON c.document_id = d.id WHERE d.collection = ?)",
                    (name,),
                )
                self._conn.execute("DELETE FROM rag_collections WHERE name = ?", (name,))
                bump_generation(self._conn)
        self._audit.record("rag.collection.delete", {"collection": name, "documents": ids})
        return len(ids)

    def delete_document(self, collection: str, document_id: str) -> DocumentInfo:
        """Remove one document: every chunk, FTS row and vector of it, in one transaction. Audited."""
        self._require_audit()
        with self._lock:
            self._require([collection])
            found = [d for r, d in self._documents(collection) if r.id == document_id]
            if not found:
                raise NotFound(
                    f"document {document_id!r} is not in collection {collection!r}",
                    hint=f"'bastion rag show {collection}' lists its documents.",
                )
            with self._conn:
                delete_document_rows(self._conn, document_id)
                bump_generation(self._conn)
        info = found[0]
        self._audit.record(
            "rag.document.delete",
            before_digest="sha256:" + info.sha256,
            details={"collection": collection, "document_id": document_id, "chunks": info.chunks},
        )
        return info

    # ---- ingest ----------------------------------------------------------------------------------

    def ingest(
        self,
        collection: str,
        path: Path | str,
        *,
        classification: str | None = None,
        groups: Sequence[str] = (),
        source_name: str | None = None,
    ) -> IngestReport:
        """Ingest a file or every supported file under a folder (see ``bastion.rag.ingest``).

        Labels come from a sidecar, a folder rule or these flags (most specific wins). Files that fail
        are reported with their error; the others are ingested. Audited (one entry per call).
        """
        self._require_audit()
        with self._lock:
            self._require([collection])
        report = ingest_path(
            self._conn,
            self._lock,
            lambda: self.embedder,
            collection,
            Path(path).expanduser(),
            classification=classification,
            groups=tuple(groups),
            source_name=source_name,
            chunk_chars=self.settings.rag.chunk_chars,
            overlap=self.settings.rag.chunk_overlap,
        )
        self._audit.record(
            "rag.ingest",
            details={
                "collection": collection,
                "files": [
                    {
                        k: v
                        for k, v in f.to_json().items()
                        if k in ("path", "status", "document_id", "chunks", "classification", "groups")
                    }
                    for f in report.files
                ],
            },
        )
        return report

    # ---- search ----------------------------------------------------------------------------------

    def _current_index(self) -> Index:
        gen = generation(self._conn)
        if self._index is None or self._index.generation != gen:
            self._index = load_index(self._conn, gen, self.embedder.dimensions)
        return self._index

    def search(
        self,
        collections: Sequence[str] | str,
        query: str,
        *,
        principal: PrincipalLike,
        k: int = 10,
        mode: str = "hybrid",
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query`` among documents ``principal`` may retrieve, best first.

        ``mode`` is ``hybrid`` (BM25 and MiniLM scores fused, see ``search.fuse``), ``bm25`` or ``vector``.
        """
        cols = [collections] if isinstance(collections, str) else list(collections)
        if mode not in search.MODES:
            raise UsageError(f"mode must be one of {', '.join(search.MODES)}, not {mode!r}", param="mode")
        if not 1 <= k <= MAX_K:
            raise UsageError(f"k must be between 1 and {MAX_K}, got {k}", param="k")
        if not query.strip():
            raise UsageError("the query is empty", hint="Give a question or some words.", param="query")
        if len(query) > MAX_QUERY_CHARS:
            raise UsageError(f"the query is longer than {MAX_QUERY_CHARS} characters", param="query")
        if not cols:
            raise UsageError("name at least one collection", param="collection")
        with self._lock:
            wanted = set(self._require(cols))
            index = self._current_index()
        permitted, rows = self._permitted(index, wanted, principal)
        if len(rows) == 0:
            return []
        depth = max(k, search.FUSE_DEPTH) if mode == "hybrid" else k
        rankings = []
        if mode in ("hybrid", "bm25"):
            with self._lock:
                terms = bm25.query_terms(self._conn, query)
                scores = bm25.bm25_scores(self._conn, index, permitted, terms)
            rankings.append(search.bm25_rank(scores, rows, depth))
        if mode in ("hybrid", "vector"):
            qvec = self._query_vector(query)
            rankings.append(search.vector_rank(index.vectors, rows, qvec, depth))
        ranked = search.fuse(*rankings, k=k) if mode == "hybrid" else rankings[0][:k]
        return self._hits(index, ranked)

    def _permitted(
        self, index: Index, wanted: set[str], principal: PrincipalLike
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Mask and positions of the rows ``principal`` may read in ``wanted``: Cedar decides first,
        everything after sees these rows only.

        Kept per (principal, collections, index generation, policy version): a relabel, ingest or
        delete bumps the generation and a policy reload the version, so a stale mask is never used.
        """
        key = (
            principal.key_id,
            tuple(sorted(principal.groups)),
            frozenset(wanted),
            index.generation,
            self.policy.version,
        )
        with self._lock:
            hit = self._masks.get(key)
            if hit is not None:
                self._masks.move_to_end(key)
                return hit
        candidates = [d.resource for d in index.docs if d.resource.collection in wanted]
        readable = self.policy.readable(principal, candidates)
        permitted = index.readable_rows(wanted, readable)
        result = (permitted, np.flatnonzero(permitted).astype(np.int64))
        with self._lock:
            self._masks[key] = result
            while len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
        return result

    def _query_vector(self, query: str) -> npt.NDArray[np.float32]:
        """The query's embedding; the last QUERY_CACHE queries are remembered (a chat often repeats
        its retrieval query, and embedding is most of a search's time)."""
        with self._lock:
            cached = self._query_vectors.get(query)
            if cached is not None:
                self._query_vectors.move_to_end(query)
                return cached
        vector: npt.NDArray[np.float32] = self.embedder.embed([query]).vectors[0]
        with self._lock:
            self._query_vectors[query] = vector
            while len(self._query_vectors) > QUERY_CACHE:
                self._query_vectors.popitem(last=False)
        return vector

    def _hits(self, index: Index, ranked: list[tuple[int, float]]) -> list[Hit]:
        hits = []
        with self._lock:
            for row, score in ranked:
                found = self._conn.execute(
                    "SELECT c.chunk_id, c.sha256, c.document_id, c.start, c.end,"
                    " substr(d.text, c.start + 1, c.end - c.start), d.classification, d.groups"
                    " FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id WHERE c.id = ?",
                    (int(index.rowids[row]),),
                ).fetchone()
                meta = index.docs[int(index.doc_of[row])]
                # Another process may have written since the index was loaded: the chunk deleted, its
                # rowid reused by another document (SQLite hands out the highest rowids again), or its
                # document relabelled. Only the document, under the label, that Cedar allowed may show.
                if found is None or not _decided_on(meta.resource, found[2], found[6], found[7]):
                    continue
                chunk_id, sha, doc_id, start, end, text = found[:6]
                hits.append(
                    Hit(
                        chunk_id,
                        sha,
                        doc_id,
                        meta.resource.collection,
                        meta.title,
                        meta.source_name,
                        start,
                        end,
                        text,
                        round(score, 6),
                        meta.resource.classification,
                    )
                )
        return hits

    def document_text(self, document_id: str, principal: PrincipalLike) -> str:
        """The extracted text of a document ``principal`` may retrieve (what hit offsets point into).

        A document they may not read and one that does not exist raise the same NotFound.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT collection, classification, groups, text FROM rag_documents WHERE id = ?",
                (document_id,),
            ).fetchone()
        if row is not None:
            resource = DocumentResource(document_id, row[0], row[1], frozenset(json.loads(row[2])))
            if self.policy.readable(principal, [resource]):
                return str(row[3])
        raise NotFound(f"document {document_id!r} not found", param="document_id")


def _decided_on(resource: DocumentResource, doc_id: str, classification: int, groups: str) -> bool:
    """True when a chunk row read now still belongs to ``resource`` under the label it was decided on."""
    return (doc_id, classification, frozenset(json.loads(groups))) == (
        resource.id,
        resource.classification,
        resource.groups,
    )
