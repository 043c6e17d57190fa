"""``/v1/vector_stores``: OpenAI's vector stores over Bastion's retrieval collections.

A vector store *is* a collection (its id is the collection's name), so what ``bastion rag ingest``
put in is searchable over HTTP and the reverse. Everything a caller is shown is counted over the
documents Cedar lets it read (``retrieve``): file counts, bytes, file lists and search results. A
document it may not read contributes nothing, not even to a count.

Attaching an uploaded file ingests it with the classification and groups from the attachment's
``attributes`` (``{"classification": "secret", "groups": "intel,ops"}``; OpenAI's attribute values are
strings, so groups are comma-separated). The label is capped by what the uploader may write: only its
own groups, and only a label Cedar would let the uploader read back (no writing above its clearance).
Deleting a whole vector store is for administrators.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from bastion.errors import NotFound, PermissionDenied, UnusableInput, UsageError
from bastion.keys import Principal
from bastion.policy import LEVELS, DocumentResource
from bastion.serve.file_routes import page
from bastion.serve.gateway import Trace
from bastion.serve.http_errors import validation_error
from bastion.serve.retrieval import RetrievalApi, handle, hits_record, json_response, off_loop


class CreateStore(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = Field(None, min_length=1, max_length=128)
    description: str = ""
    file_ids: list[str] | None = None


class AttachFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    file_id: str = Field(min_length=1)
    attributes: dict[str, str | float | bool] | None = None


class SearchStore(BaseModel):
    model_config = ConfigDict(extra="allow")

    query: str | list[str] = Field(min_length=1)
    max_num_results: int = Field(10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    rewrite_query: bool = False


def _body(model: type[BaseModel], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def _epoch(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def store_object(info: Any) -> dict[str, Any]:
    """OpenAI's ``vector_store`` object for ``info`` as the retrieval core showed it to the caller
    (counted over the documents the caller may read)."""
    docs = info.document_list
    n = info.documents
    return {
        "id": info.name,
        "object": "vector_store",
        "name": info.name,
        "description": info.description,
        "created_at": _epoch(info.created_at),
        "status": "completed",
        "usage_bytes": sum(d.chars for d in docs),
        "file_counts": {"in_progress": 0, "completed": n, "failed": 0, "cancelled": 0, "total": n},
        "last_active_at": None,
        "metadata": None,
        "expires_after": None,
        "expires_at": None,
    }


def _document_file(store: str, doc: Any, attached: dict[str, Any]) -> dict[str, Any]:
    """A readable document as OpenAI's ``vector_store.file`` (the upload's id when it came from one)."""
    attachment = attached.get(doc.id)
    if attachment is not None:
        return attachment.to_openai()  # type: ignore[no-any-return]
    return {
        "id": doc.id,
        "object": "vector_store.file",
        "created_at": _epoch(doc.ingested_at),
        "vector_store_id": store,
        "status": "completed",
        "last_error": None,
        "usage_bytes": doc.chars,
        "attributes": {
            "title": doc.title,
            "classification": doc.classification,
            "groups": ",".join(doc.groups),
        },
        "chunking_strategy": {"type": "other"},
        "document_id": doc.id,
    }


async def _collection(api: RetrievalApi, name: str, principal: Principal, request: Request) -> Any:
    """The collection ``name`` with only the documents ``principal`` may read (Cedar, in the core).

    NotFound, exactly as for a missing one, unless the caller may know it exists: an administrator,
    the key that created it, or a key that may read at least one of its documents.
    """
    rag = await api.core()
    info = await off_loop(rag.show, name, principal)
    if not _visible(api, request, principal, info):
        raise NotFound(f"collection {name!r} does not exist", hint="GET /v1/vector_stores lists yours.",
                       param="vector_store_id")
    return info


def _visible(api: RetrievalApi, request: Request, principal: Principal, info: Any) -> bool:
    if info.documents > 0 or api.gateway.is_admin(request):
        return True
    return principal.owns(api.files.store_owner(info.name))


async def create(api: RetrievalApi, request: Request) -> Response:
    """``POST /v1/vector_stores``: a new (empty) collection named ``name``."""

    async def run(principal: Principal, trace: Trace) -> Response:
        trace.raw, raw = await api.gateway.read_json(request)
        body: CreateStore = _body(CreateStore, raw)
        if body.file_ids:
            raise UsageError(
                "file_ids at creation carry no classification; attach each file with its attributes",
                hint='POST /v1/vector_stores/{id}/files {"file_id": ..., "attributes":'
                ' {"classification": ..., "groups": ...}}',
                param="file_ids",
            )
        name = body.name or f"vs_{secrets.token_hex(8)}"
        rag = await api.core()
        await off_loop(rag.create_collection, name, body.description)
        await off_loop(api.files.own_store, name, principal.key_id)
        await api.audit_admin("vector_store.create", principal, {"vector_store": name})
        info = await off_loop(rag.show, name, principal)
        return json_response(store_object(info))

    return await handle(api.gateway, request, "vector_stores", run)


async def list_stores(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/vector_stores``: every collection, counted over what the caller may read."""

    async def run(principal: Principal, trace: Trace) -> Response:
        rag = await api.core()
        data = []
        for summary in await off_loop(rag.list_collections, principal):
            info = await off_loop(rag.show, summary.name, principal)
            if _visible(api, request, principal, info):  # stores a key can read nothing in stay unnamed
                data.append(store_object(info))
        return json_response(page(data))

    return await handle(api.gateway, request, "vector_stores", run)


async def retrieve(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/vector_stores/{id}``."""

    async def run(principal: Principal, trace: Trace) -> Response:
        return json_response(
            store_object(await _collection(api, request.path_params["store"], principal, request))
        )

    return await handle(api.gateway, request, "vector_stores", run)


async def delete(api: RetrievalApi, request: Request) -> Response:
    """``DELETE /v1/vector_stores/{id}``: administrators only (it deletes everybody's documents)."""

    async def run(principal: Principal, trace: Trace) -> Response:
        name = request.path_params["store"]
        if not api.gateway.is_admin(request):
            raise PermissionDenied(
                "deleting a vector store is for administrators (it holds other keys' documents)",
                hint="Delete your own files with DELETE /v1/vector_stores/{id}/files/{file_id}.",
            )
        rag = await api.core()
        await off_loop(rag.delete_collection, name)
        await off_loop(api.files.forget_store, name)
        await api.audit_admin("vector_store.delete", principal, {"vector_store": name})
        return json_response({"id": name, "object": "vector_store.deleted", "deleted": True})

    return await handle(api.gateway, request, "vector_stores", run)


def _labels(
    api: RetrievalApi, principal: Principal, store: str, attributes: dict[str, Any]
) -> tuple[str, tuple[str, ...]]:
    """The classification and groups an attachment asks for, refused beyond what ``principal`` may write."""
    classification = attributes.get("classification")
    if not isinstance(classification, str) or classification not in LEVELS:
        raise UsageError(
            f"attributes.classification must be one of {', '.join(LEVELS)}",
            hint='e.g. "attributes": {"classification": "official", "groups": "staff"}',
            param="attributes.classification",
        )
    raw = attributes.get("groups")
    groups = tuple(sorted({g.strip() for g in raw.split(",") if g.strip()})) if isinstance(raw, str) else ()
    if not groups:
        raise UsageError(
            "attributes.groups must name the groups that may read the file (comma-separated)",
            hint='e.g. "groups": "staff,ops"; a document no group may read would be lost to everyone',
            param="attributes.groups",
        )
    foreign = sorted(set(groups) - set(principal.groups))
    if foreign:
        raise PermissionDenied(
            f"API key {principal.key_id} may only label documents for its own groups; not a member of"
            f" {', '.join(foreign)}",
            hint="Ask a member of those groups to upload it, or label it for your groups.",
            param="attributes.groups",
        )
    # Cedar decides the cap: the uploader must be allowed to read what it writes (so nobody writes
    # above its clearance, and a policy that forbids a group's documents forbids writing them too).
    probe = DocumentResource(f"upload:{store}", store, LEVELS[classification], frozenset(groups))
    if probe.id not in api.policy.readable(principal, [probe]):
        raise PermissionDenied(
            f"API key {principal.key_id} may not write a {classification!r} document for {', '.join(groups)}:"
            " the access policy would not let it read the document back (clearance or groups)",
            hint=f"Label it at or below your clearance; policy {api.policy.origin}.",
            param="attributes.classification",
        )
    return classification, groups


async def attach(api: RetrievalApi, request: Request) -> Response:
    """``POST /v1/vector_stores/{id}/files``: ingest an uploaded file with the labels in its attributes."""

    async def run(principal: Principal, trace: Trace) -> Response:
        store = request.path_params["store"]
        trace.raw, raw = await api.gateway.read_json(request)
        body: AttachFile = _body(AttachFile, raw)
        record = await off_loop(api.files.get, body.file_id, principal.identities)
        attributes = dict(body.attributes or {})
        classification, groups = _labels(api, principal, store, attributes)
        await _collection(api, store, principal, request)  # NotFound, before anything is written
        if not principal.owns(api.files.store_owner(store)) and not api.gateway.is_admin(request):
            # Reading is Cedar's per document; writing into a collection is its creator's: a key that
            # could add files to any store could plant text (false facts, injected instructions) that
            # other keys' searches rank beside the real sources.
            raise PermissionDenied(
                f"only the key that created vector store {store!r}, or an administrator, may add files to it",
                hint="Create a vector store of your own, or ask an administrator to add the file.",
                param="vector_store_id",
            )
        rag = await api.core()
        # Ingested from the upload's own path, never under its client-given name: a document's id is
        # derived from its source, and a name-keyed source let another key's upload of a file with the
        # same name replace (or, with the same bytes, relabel) a document that key may not even read.
        report = await off_loop(
            rag.ingest, store, api.files.path(record), classification=classification, groups=groups
        )
        outcome = report.files[0]
        if outcome.status == "failed" or outcome.document_id is None:
            error = outcome.error or {}
            raise UnusableInput(
                f"{record.filename}: {error.get('message', 'cannot be ingested')}",
                hint=error.get("hint") or "Upload a well-formed document.",
                param="file_id",
            )
        try:
            attachment = await off_loop(api.files.attach, record, store, outcome.document_id, attributes)
        except NotFound:
            # The upload was deleted while it was ingested: its document would belong to nobody (no
            # attachment for the uploader's delete to find) and stay searchable. Take it out again.
            await off_loop(rag.delete_document, store, outcome.document_id)
            raise
        await api.audit_admin(
            "vector_store.file.attach",
            principal,
            {
                "vector_store": store,
                "file": record.id,
                "document": outcome.document_id,
                "classification": classification,
                "groups": list(groups),
                "outcome": outcome.status,
            },
        )
        return json_response(attachment.to_openai())

    return await handle(api.gateway, request, "vector_stores", run)


async def list_files(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/vector_stores/{id}/files``: the documents the caller may read."""

    async def run(principal: Principal, trace: Trace) -> Response:
        store = request.path_params["store"]
        info = await _collection(api, store, principal, request)
        attached = await off_loop(api.files.by_document, store)
        return json_response(page([_document_file(store, d, attached) for d in info.document_list]))

    return await handle(api.gateway, request, "vector_stores", run)


async def _readable_file(
    api: RetrievalApi, principal: Principal, store: str, file_id: str, request: Request
) -> tuple[Any, Any]:
    """(document, attachment or None) of ``file_id`` (an upload's or a document's id) if readable; else
    NotFound, the same for a file that is not there and one the caller may not read."""
    info = await _collection(api, store, principal, request)
    attached = await off_loop(api.files.by_document, store)
    for doc in info.document_list:
        attachment = attached.get(doc.id)
        if doc.id == file_id or (attachment is not None and attachment.file_id == file_id):
            return doc, attachment
    raise NotFound(
        f"no file {file_id!r} in vector store {store!r}",
        param="file_id",
        hint=f"List them with GET /v1/vector_stores/{store}/files.",
    )


async def retrieve_file(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/vector_stores/{id}/files/{file_id}`` (what the SDK's ``create_and_poll`` polls)."""

    async def run(principal: Principal, trace: Trace) -> Response:
        store = request.path_params["store"]
        doc, attachment = await _readable_file(api, principal, store, request.path_params["file_id"], request)
        return json_response(_document_file(store, doc, {doc.id: attachment} if attachment else {}))

    return await handle(api.gateway, request, "vector_stores", run)


async def detach(api: RetrievalApi, request: Request) -> Response:
    """``DELETE /v1/vector_stores/{id}/files/{file_id}``: removes the document and all its chunks.

    The uploader of the file or an administrator may; the upload itself stays (``DELETE /v1/files``)."""

    async def run(principal: Principal, trace: Trace) -> Response:
        store, file_id = request.path_params["store"], request.path_params["file_id"]
        doc, attachment = await _readable_file(api, principal, store, file_id, request)
        mine = attachment is not None and principal.owns(attachment.owner)
        if not mine and not api.gateway.is_admin(request):
            raise PermissionDenied(
                f"only the key that attached {file_id!r}, or an administrator, may delete it",
                hint="Ask its uploader or an administrator ('bastion rag delete' on the gateway host).",
            )
        rag = await api.core()
        await off_loop(rag.delete_document, store, doc.id)
        if attachment is not None:
            await off_loop(api.files.detach, store, attachment.file_id)
        await api.audit_admin(
            "vector_store.file.delete", principal, {"vector_store": store, "document": doc.id}
        )
        return json_response({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})

    return await handle(api.gateway, request, "vector_stores", run)


async def search(api: RetrievalApi, request: Request) -> Response:
    """``POST /v1/vector_stores/{id}/search``: the best chunks the caller may read (audited by id)."""

    async def run(principal: Principal, trace: Trace) -> Response:
        store = request.path_params["store"]
        trace.raw, raw = await api.gateway.read_json(request)
        body: SearchStore = _body(SearchStore, raw)
        if body.filters:
            raise UsageError(
                "attribute filters are not supported by this gateway",
                param="filters",
                hint="Search without filters; access control already limits what you see.",
            )
        query = body.query if isinstance(body.query, str) else " ".join(body.query)
        rag = await api.core()
        hits = await off_loop(rag.search, [store], query, principal=principal, k=body.max_num_results)
        trace.retrieval = hits_record([store], hits)
        data = [
            {
                "file_id": h.document_id,
                "filename": h.source_name or h.title,
                "score": h.score,
                "attributes": {
                    "title": h.title,
                    "document_id": h.document_id,
                    "chunk_id": h.chunk_id,
                    "start": h.start,
                    "end": h.end,
                },
                "content": [{"type": "text", "text": h.text}],
            }
            for h in hits
        ]
        return json_response(
            {
                "object": "vector_store.search_results.page",
                "search_query": [query],
                "data": data,
                "has_more": False,
                "next_page": None,
            }
        )

    return await handle(api.gateway, request, "vector_stores", run)
