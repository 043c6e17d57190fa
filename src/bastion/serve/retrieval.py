"""What the OpenAI-shaped retrieval endpoints share: the seam to the retrieval core and one request wrapper.

The endpoints (:mod:`bastion.serve.files`, :mod:`bastion.serve.vector_stores`,
:mod:`bastion.serve.responses`) talk to ``bastion.rag.RagStore`` only through :class:`Retrieval`, the
public face the retrieval core exposes. Authorisation of documents happens *inside* that core (its
search ranks only chunks the principal may read); this layer authenticates, shapes requests and answers
as OpenAI's SDK expects, and audits every call, refusals included.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bastion.audit import AuditLog
from bastion.keys import Principal
from bastion.policy import AccessPolicy
from bastion.serve.backends import Usage
from bastion.serve.files import FileStore
from bastion.serve.gateway import Gateway, Trace

log = logging.getLogger("bastion.serve")
JSON = "application/json"


class Hit(Protocol):
    """One ranked chunk (``bastion.rag.Hit``); ``start``/``end`` index the document's extracted text."""

    @property
    def chunk_id(self) -> str: ...
    @property
    def chunk_sha256(self) -> str: ...
    @property
    def document_id(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def source_name(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def classification(self) -> int: ...


class Retrieval(Protocol):
    """The public face of the retrieval core that the HTTP layer uses (``bastion.rag.RagStore``)."""

    def create_collection(self, name: str, description: str = "") -> Any:
        """Create an empty collection."""
        ...

    def list_collections(self, principal: Principal | None = None) -> Sequence[Any]:
        """Every collection (``CollectionInfo``), counted over what ``principal`` may read."""
        ...

    def show(self, name: str, principal: Principal | None = None) -> Any:
        """One collection with the records of the documents ``principal`` may read (NotFound if none)."""
        ...

    def delete_collection(self, name: str) -> Any:
        """Delete a collection and everything in it."""
        ...

    def delete_document(self, collection: str, document_id: str) -> Any:
        """Delete one document and every chunk and vector of it."""
        ...

    def search(
        self,
        collections: Sequence[str],
        query: str,
        *,
        principal: Principal,
        k: int = 10,
        mode: str = "hybrid",
    ) -> Sequence[Hit]:
        """The ``k`` best chunks of ``collections`` for ``query`` among those ``principal`` may read."""
        ...

    def document_text(self, document_id: str, principal: Principal) -> str:
        """The extracted text of a document ``principal`` may read (NotFound otherwise)."""
        ...

    def ingest(
        self,
        collection: str,
        path: Path,
        *,
        classification: str | None = None,
        groups: Sequence[str] = (),
        source_name: str | None = None,
    ) -> Any:
        """Ingest a file into ``collection`` with its classification and groups (``IngestReport``)."""
        ...


def hits_record(collections: Sequence[str], hits: Sequence[Hit]) -> dict[str, Any]:
    """The audit entry's ``retrieval`` field: which chunks (ids and digests) went where, never their text."""
    return {
        "collections": list(collections),
        "chunks": [{"id": h.chunk_id, "sha256": h.chunk_sha256, "document": h.document_id} for h in hits],
    }


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response (orjson)."""
    return Response(orjson.dumps(body), status, media_type=JSON)


Handler = Callable[[Principal, Trace], Awaitable[Response]]


async def handle(gateway: Gateway, request: Request, what: str, handler: Handler) -> Response:
    """Authenticate, run ``handler``, and audit the outcome (an answer or a refusal) before it leaves.

    ``what`` names the operation in metrics and in the audit entry's model field (e.g. ``files``);
    errors of the :class:`BastionError` tree become OpenAI error envelopes, anything else a logged 500.
    """
    trace = Trace(uuid.uuid4().hex, time.perf_counter(), what, model=what)
    try:
        principal = gateway.authenticate(request, trace)
        response = await handler(principal, trace)
    except Exception as exc:  # noqa: BLE001 - every failure is answered and audited in one place
        return await gateway.refuse_any(trace, exc)
    if response.status_code >= 400:
        return response
    trace.authorised = True
    response.headers["x-request-id"] = trace.request_id
    return await gateway.finish(trace, None, response.status_code, Usage(), response)


async def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking retrieval work (SQLite, embeddings, parsing) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class RetrievalApi:
    """What the retrieval endpoints share: the gateway (authentication, audit, the model flow), the
    uploaded files, the access policy (to cap what an uploader may label) and the retrieval core,
    opened on first use so a gateway nobody asks for retrieval creates no index."""

    def __init__(
        self, gateway: Gateway, files: FileStore, policy: AccessPolicy, opener: Callable[[], Retrieval]
    ) -> None:
        self.gateway = gateway
        self.files = files
        self.policy = policy
        self._opener = opener
        self._rag: Retrieval | None = None
        self._lock = threading.Lock()

    def rag(self) -> Retrieval:
        """The retrieval core (opened once)."""
        with self._lock:
            if self._rag is None:
                self._rag = self._opener()
            return self._rag

    async def core(self) -> Retrieval:
        """:meth:`rag`, off the event loop (opening reads the index)."""
        return await asyncio.to_thread(self.rag)

    async def audit_admin(self, action: str, principal: Principal, details: dict[str, Any]) -> None:
        """An administrative entry (upload, attach, delete ...) under the caller's key id."""
        audit = self.gateway.audit
        if audit is not None:
            await asyncio.to_thread(audit.append_admin, action, principal.key_id, None, None, details)

    def close(self) -> None:
        self.files.close()
        closer = getattr(self._rag, "close", None)
        if closer is not None:
            closer()


class GatewayAudit:
    """The retrieval core's admin entries (ingest, deletes) through the gateway's own audit writer, so a
    gateway process has one writer of the log (the core opens the log per entry otherwise)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(
        self,
        action: str,
        details: dict[str, Any],
        before_digest: str | None = None,
        after_digest: str | None = None,
    ) -> None:
        """Append one admin entry durably (called off the event loop, as every retrieval write is)."""
        self.log.append_admin(action, "gateway", before_digest, after_digest, details)
