"""The gateway's OpenAPI 3.1 document, generated from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from bastion import __version__
from bastion.serve.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ErrorEnvelope

_ERRORS = {
    "400": "Invalid body; `error.param` names the field.",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The key may not call this model.",
    "404": "Unknown model.",
    "413": "Body larger than server.max_body_bytes.",
    "429": "The model's queue is full.",
    "503": "The model's backend (and its fallbacks) are unavailable.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _post(summary: str, request: type[BaseModel], streams: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {
                "200": {"description": "OpenAI-compatible response", "content": ok},
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": _ref(ErrorEnvelope)}},
                    }
                    for code, text in _ERRORS.items()
                },
            },
        }
    }


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (computed once)."""
    schemas: dict[str, Any] = {}
    from bastion.serve.responses import ResponsesRequest
    from bastion.serve.vector_stores import AttachFile, CreateStore, SearchStore

    retrieval = (ResponsesRequest, CreateStore, AttachFile, SearchStore)
    for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ErrorEnvelope, *retrieval):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion gateway",
            "version": __version__,
            "description": "OpenAI-compatible API of the Bastion sovereign model gateway.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/chat/completions": _post(
                "Chat completion (JSON or SSE stream)", ChatCompletionRequest, True
            ),
            "/v1/completions": _post("Text completion (JSON or SSE stream)", CompletionRequest, True),
            "/v1/embeddings": _post("Embeddings", EmbeddingRequest, False),
            "/v1/responses": _post("An answer with citations from vector stores (file_search tool)",
                                   ResponsesRequest, False),
            "/v1/vector_stores": _post("Create a vector store (a retrieval collection)", CreateStore, False),
            "/v1/vector_stores/{store}/files": _post("Ingest an uploaded file with its classification and"
                                                      " groups (attributes)", AttachFile, False),
            "/v1/vector_stores/{store}/search": _post("Best chunks this key may read", SearchStore, False),
            "/v1/models": {
                "get": {
                    "summary": "Models this key may call",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "Model list"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Per-model health",
                    "responses": {"200": {"description": "ok"}, "503": {"description": "no model up"}},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
            },
        },
    }
