"""Render every error as the OpenAI error envelope, in one place."""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from bastion.errors import BastionError, UsageError

log = logging.getLogger("bastion.serve")


def error_response(exc: BastionError, headers: dict[str, str] | None = None) -> Response:
    """``{"error": {"message", "type", "param", "code"}}`` with the error's HTTP status."""
    message = exc.message + (f" ({exc.hint})" if exc.hint else "")
    body = {"error": {"message": message, "type": exc.error_type, "param": exc.param, "code": exc.code}}
    return Response(orjson.dumps(body), exc.http_status, headers=headers, media_type="application/json")


def validation_error(exc: ValidationError) -> UsageError:
    """The first problem of a pydantic validation error, with the field named."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return UsageError(f"invalid request body: {field}: {first['msg']}", param=field or None)


def sse_error(exc: BastionError) -> bytes:
    """An error that happens after a stream has started, as a final SSE event."""
    body = {"error": {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
