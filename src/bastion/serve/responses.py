"""``POST /v1/responses`` with the ``file_search`` tool: an answer grounded in the caller's documents.

The flow, top to bottom in :func:`respond`:

    authenticate -> validate -> search the vector stores *as the caller* (the retrieval core ranks only
    chunks this principal may read) -> put the best chunks in a numbered prompt -> the chat request flow
    of every other model call (Cedar per candidate, quota, DLP: :meth:`Gateway.answer`) -> answer with a
    ``file_citation`` per chunk the model was shown -> audit (which chunks, by id and sha256, for whom)

Citations carry, beside OpenAI's ``file_id``/``filename``/``index``, the ``document_id``, ``title`` and
the ``start``/``end`` character offsets of the quoted chunk in the document's extracted text, which
``GET /v1/files/{document_id}/content`` returns to a caller allowed to read it.
Streaming is not offered here (``stream: true`` is a 400); chat completions stream.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from bastion.errors import PolicyDenied, UsageError
from bastion.keys import Principal
from bastion.serve.backends import Usage
from bastion.serve.gateway import Gateway, Trace
from bastion.serve.http_errors import validation_error
from bastion.serve.retrieval import Hit, Retrieval, RetrievalApi, hits_record, off_loop
from bastion.serve.schemas import normalise

#: characters of retrieved text put in front of the model: SmolLM2's 2,048-token context holds the
#: sources (~4 characters a token), the question and a 256-token answer
CONTEXT_CHARS = 3000
DEFAULT_RESULTS = 4
GROUNDING = (
    "Answer the question using only the numbered sources below. Cite the source you used by its number"
    " in brackets, like [1]. If the sources do not answer it, say you do not know."
)
NO_SOURCES = "No document available to you answers this question. Say that you do not know."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileSearchTool(_Strict):
    """``{"type": "file_search", "vector_store_ids": [...]}``: the collections to search."""

    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=16)
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: dict[str, Any] | None = None


class InputText(_Strict):
    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputText]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)


class ResponsesRequest(BaseModel):
    """The fields of ``POST /v1/responses`` Bastion reads; others OpenAI defines are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputMessage] = Field(min_length=1)
    instructions: str | None = None
    tools: list[FileSearchTool] = Field(default_factory=list, max_length=1)
    max_output_tokens: int | None = Field(None, ge=1, le=131072)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    include: list[str] | None = None

    def messages(self) -> list[InputMessage]:
        return [InputMessage(role="user", content=self.input)] if isinstance(self.input, str) else self.input


def grounded_messages(
    request: ResponsesRequest, hits: Sequence[Hit], budget: int = CONTEXT_CHARS
) -> tuple[list[dict[str, str]], list[tuple[Hit, str]]]:
    """The chat messages for ``request`` with ``hits`` as numbered sources, and the sources used.

    Chunks go in rank order while they fit ``budget`` characters; the first is cut to fit if it alone
    does not (its quoted text is then a prefix of the chunk, so the offsets still point at it).
    """
    used: list[tuple[Hit, str]] = []
    left = budget
    for hit in hits:
        text = hit.text if len(hit.text) <= left else (hit.text[:left] if not used else "")
        if not text:
            break
        used.append((hit, text))
        left -= len(text)
    system = [request.instructions] if request.instructions else []
    if request.tools:
        sources = "\n\n".join(f"[{i}] {hit.title}:\n{text}" for i, (hit, text) in enumerate(used, 1))
        system.append(f"{GROUNDING}\n\n{sources}" if used else NO_SOURCES)
    messages = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    for m in request.messages():
        role = "system" if m.role == "developer" else m.role
        messages.append({"role": role, "content": m.text()})
    return messages, used


def citations(answer: str, used: Sequence[tuple[Hit, str]]) -> list[dict[str, Any]]:
    """One ``file_citation`` per source the model was shown, at its ``[n]`` in the answer if it cited it
    (else at the end), with the document, title and the character offsets of the quoted text."""
    out = []
    for n, (hit, text) in enumerate(used, 1):
        marker = re.search(rf"\[{n}\]", answer)
        out.append(
            {
                "type": "file_citation",
                "file_id": hit.document_id,
                "filename": hit.source_name or hit.title,
                "index": marker.end() if marker else len(answer),
                "document_id": hit.document_id,
                "title": hit.title,
                "vector_store_id": hit.collection,
                "chunk_id": hit.chunk_id,
                "chunk_sha256": hit.chunk_sha256,
                "start": hit.start,
                "end": hit.start + len(text),
                "cited_by_model": marker is not None,
            }
        )
    return out


def _local_route(gateway: Gateway, model: str) -> None:
    """Refuse retrieval for a model whose route (itself or a fallback) leaves this host.

    Retrieved chunks are the organisation's documents; Cedar's clearance and DLP's markings decide who
    may send what to a model, but a document carries no marking DLP could see, so an upstream in the
    route (a cloud fallback) would receive text no policy looked at. Until documents' classifications
    reach the per-candidate decision, retrieval answers only from models on this host.
    """
    if model not in gateway.models:
        return  # the request flow answers 404 for it
    remote = [m for m in gateway.router.route(model) if not gateway.models[m].local]
    if remote:
        raise PolicyDenied(
            f"file_search puts documents in the prompt, and model {model!r}'s route reaches"
            f" {', '.join(remote)}, outside this host",
            hint="Ask with a local model whose fallbacks are local too.",
            param="model",
        )


def _within_ceiling(gateway: Gateway, model: str, hits: Sequence[Hit]) -> list[Hit]:
    """The hits every model of ``model``'s route may see: a chunk above the lowest classification
    ceiling of the route never enters the prompt (the reader's clearance decided what they may read;
    the ceiling decides what the answering model may hold, as DLP's marking check does for text)."""
    if model not in gateway.models:
        return list(hits)
    ceiling = min(gateway.models[m].ceiling for m in gateway.router.route(model) if m in gateway.models)
    return [h for h in hits if h.classification <= ceiling]


def _search_call(
    request_id: str, query: str, used: Sequence[tuple[Hit, str]], results: bool
) -> dict[str, Any]:
    call: dict[str, Any] = {
        "id": f"fs_{request_id}",
        "type": "file_search_call",
        "status": "completed",
        "queries": [query],
        "results": None,
    }
    if results:
        call["results"] = [
            {
                "file_id": hit.document_id,
                "filename": hit.source_name or hit.title,
                "score": hit.score,
                "text": text,
                "attributes": {"title": hit.title, "start": hit.start, "end": hit.start + len(text)},
            }
            for hit, text in used
        ]
    return call


async def respond(api: RetrievalApi, request: Request) -> Response:
    """``POST /v1/responses``: see the module docstring for the flow."""
    gateway = api.gateway
    trace = Trace(uuid.uuid4().hex, time.perf_counter(), "chat")
    try:
        principal = gateway.authenticate(request, trace)
        trace.raw, raw = await gateway.read_json(request)
        try:
            body = ResponsesRequest.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        if body.stream:
            raise UsageError(
                "stream is not supported on /v1/responses by this gateway",
                hint="Send stream: false, or stream with /v1/chat/completions.",
                param="stream",
            )
        trace.model = body.model
        rag = await api.core() if body.tools else None
        return await _answer(gateway, rag, request, principal, body, trace)
    except Exception as exc:  # noqa: BLE001 - refused and audited in one place
        return await gateway.refuse_any(trace, exc)


async def _answer(
    gateway: Gateway,
    rag: Retrieval | None,
    request: Request,
    principal: Principal,
    body: ResponsesRequest,
    trace: Trace,
) -> Response:
    query = next((m.text() for m in reversed(body.messages()) if m.role == "user"), "")
    hits: Sequence[Hit] = []
    if body.tools and rag is not None:
        _local_route(gateway, body.model)
        tool = body.tools[0]
        if not query.strip():
            raise UsageError("file_search needs a user message to search with", param="input")
        # The search runs as the caller: the core ranks only chunks this principal may read, so nothing
        # else can reach the prompt, a citation or a count below.
        hits = await off_loop(
            rag.search,
            tool.vector_store_ids,
            query,
            principal=principal,
            k=tool.max_num_results or DEFAULT_RESULTS,
        )
        hits = _within_ceiling(gateway, body.model, hits)
    messages, used = grounded_messages(body, hits)
    if body.tools:
        trace.retrieval = hits_record(body.tools[0].vector_store_ids, [h for h, _ in used])
    chat: dict[str, Any] = {"model": body.model, "messages": messages}
    for ours, theirs in (
        ("max_tokens", "max_output_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ):
        if getattr(body, theirs) is not None:
            chat[ours] = getattr(body, theirs)
    try:
        chat = normalise("chat", chat)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    answer = await gateway.answer(request, principal, chat, trace)
    assert not isinstance(answer, Response)  # never a stream: chat has no "stream"
    backend, reply = answer
    completion = orjson.loads(reply.body)
    text = completion["choices"][0]["message"].get("content") or ""
    output: list[dict[str, Any]] = []
    if body.tools:
        results = "file_search_call.results" in (body.include or [])
        output.append(_search_call(trace.request_id, query, used, results))
    output.append(
        {
            "id": f"msg_{trace.request_id}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": citations(text, used)}],
        }
    )
    payload = _envelope(body, trace, backend.info.digest, output, reply.usage)
    return await gateway.respond(trace, principal, backend, orjson.dumps(payload), reply.usage)


def _envelope(
    body: ResponsesRequest, trace: Trace, digest: str | None, output: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    return {
        "id": f"resp_{trace.request_id}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.model,
        "output": output,
        "instructions": body.instructions,
        "tools": [t.model_dump(exclude_none=True) for t in body.tools],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
        "error": None,
        "incomplete_details": None,
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": digest,
    }
