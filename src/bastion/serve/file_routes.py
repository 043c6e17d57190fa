"""``/v1/files``: upload (multipart), list, retrieve, delete, and content — as OpenAI's SDK calls them.

A key sees only the files it uploaded. ``GET /v1/files/{id}/content`` also takes a *document* id (what
citations and search results name) and returns that document's extracted text when the caller may read
it, so a citation's ``start``/``end`` can be checked against the text they index; for anyone else the
document does not exist (404, the same answer as for an id that was never issued).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from bastion.errors import BastionError, NotFound, PayloadTooLarge, PermissionDenied, UsageError
from bastion.keys import Principal
from bastion.serve.files import PURPOSES, FileRecord
from bastion.serve.gateway import Trace
from bastion.serve.retrieval import RetrievalApi, handle, json_response, off_loop


async def upload(api: RetrievalApi, request: Request) -> Response:
    """``POST /v1/files`` (multipart: ``file`` and ``purpose``)."""

    async def run(principal: Principal, trace: Trace) -> Response:
        limit = api.gateway.settings.server.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            raise UsageError(
                "an upload needs a Content-Length header", hint="Send the file as multipart/form-data."
            )
        if int(declared) > limit:
            raise PayloadTooLarge(
                f"upload of {declared} bytes exceeds server.max_upload_bytes ({limit} bytes)",
                hint="Split the document, or ask the administrator to raise server.max_upload_bytes.",
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise UsageError(
                "an upload must be multipart/form-data with fields 'file' and 'purpose'",
                hint="client.files.create(file=open(PATH, 'rb'), purpose='assistants')",
            )
        try:
            async with request.form(max_files=1, max_fields=8) as form:
                file, purpose = form.get("file"), form.get("purpose")
                if not isinstance(file, UploadFile):
                    raise UsageError(
                        "the upload has no 'file' part", param="file",
                        hint="client.files.create(file=open(PATH, 'rb'), purpose='assistants')",
                    )
                if not isinstance(purpose, str) or purpose not in PURPOSES:
                    raise UsageError(
                        f"purpose must be one of {', '.join(PURPOSES)}", param="purpose",
                        hint="Use purpose='assistants' for documents to search.",
                    )
                data = await file.read()
                name = file.filename or ""
        except BastionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the multipart parser's errors name no class of ours
            raise UsageError(
                f"the multipart body cannot be read: {exc}", hint="Send well-formed multipart/form-data."
            ) from exc
        record = await off_loop(api.files.add, principal.key_id, name, purpose, data)
        await api.audit_admin(
            "file.upload",
            principal,
            {"file": record.id, "filename": record.filename, "sha256": record.sha256, "bytes": record.bytes},
        )
        trace.raw = record.sha256.encode()
        return json_response(record.to_openai())

    return await handle(api.gateway, request, "files", run)


async def list_files(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/files``: the caller's uploads."""

    async def run(principal: Principal, trace: Trace) -> Response:
        purpose = request.query_params.get("purpose")
        records = await off_loop(api.files.owned, principal.identities, purpose)
        return json_response(page([r.to_openai() for r in records]))

    return await handle(api.gateway, request, "files", run)


async def retrieve(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/files/{file_id}``."""

    async def run(principal: Principal, trace: Trace) -> Response:
        record = await off_loop(api.files.get, request.path_params["file_id"], principal.identities)
        return json_response(record.to_openai())

    return await handle(api.gateway, request, "files", run)


async def delete(api: RetrievalApi, request: Request) -> Response:
    """``DELETE /v1/files/{file_id}``: the upload and every document its attachments made."""

    async def run(principal: Principal, trace: Trace) -> Response:
        file_id = request.path_params["file_id"]
        record: FileRecord = await off_loop(api.files.get, file_id, principal.identities)
        gone = await off_loop(api.files.delete, record)
        rag = await api.core() if gone else None
        for attachment in gone:
            assert rag is not None
            await off_loop(rag.delete_document, attachment.vector_store_id, attachment.document_id)
        await api.audit_admin(
            "file.delete",
            principal,
            {"file": record.id, "documents": [[a.vector_store_id, a.document_id] for a in gone]},
        )
        return json_response({"id": record.id, "object": "file", "deleted": True})

    return await handle(api.gateway, request, "files", run)


async def content(api: RetrievalApi, request: Request) -> Response:
    """``GET /v1/files/{file_id}/content``: an upload's bytes (its uploader), or a document's text."""

    async def run(principal: Principal, trace: Trace) -> Response:
        file_id = request.path_params["file_id"]
        try:
            record = await off_loop(api.files.get, file_id, principal.identities)
        except NotFound:
            pass
        else:
            data = await off_loop(api.files.path(record).read_bytes)
            return Response(data, media_type="application/octet-stream")
        rag = await api.core()
        try:
            text = await off_loop(rag.document_text, file_id, principal)
        except (NotFound, PermissionDenied) as exc:
            # Not readable and not there answer alike: a document's existence is not the caller's to learn.
            raise NotFound(
                f"no file {file_id!r}",
                hint="Use a file id of yours, or a document id from a citation.",
                param="file_id",
            ) from exc
        trace.retrieval = {"documents": [file_id]}
        return Response(text.encode("utf-8"), media_type="text/plain; charset=utf-8")

    return await handle(api.gateway, request, "files", run)


def page(data: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI's list envelope (one page: everything fits)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


