"""Request bodies of the OpenAI-compatible API, validated before anything reaches a backend.

Unknown fields are accepted and passed on (clients send vendor extensions), but every field Bastion
reads is typed, so a bad value is a 400 that names the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)


class _Sampling(_Body):
    max_tokens: int | None = Field(None, ge=1, le=131072)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    n: int = Field(1, ge=1, le=1)
    user: str | None = None


class TextPart(BaseModel):
    """One part of a message's content list. Only text: the served models read no images or audio."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        # Only an assistant turn (one that called tools) may come without content.
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content (a string or a list of text parts)")
        return self


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=131072)
    response_format: ResponseFormat | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: bool = False


class EmbeddingRequest(_Body):
    """``POST /v1/embeddings``."""

    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error response, whatever the endpoint: OpenAI's envelope."""

    error: ErrorBody


SCHEMAS: dict[str, type[_Body]] = {
    "chat": ChatCompletionRequest,
    "completion": CompletionRequest,
    "embedding": EmbeddingRequest,
}


def normalise(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """Validate ``body`` for ``endpoint`` (pydantic ValidationError on a bad field) and normalise it.

    ``null`` means "not set" in OpenAI's API, so top-level nulls are dropped (a backend then applies its
    default instead of receiving ``None``); a message's list of text parts becomes one string.

    What comes out is the *validated* request (``"temperature": "0.5"`` becomes ``0.5``), never the raw
    body: validation accepts a string that parses as a number, and a backend handed the raw string
    failed with a 500 (red team, wave 2).
    """
    validated = SCHEMAS[endpoint].model_validate(body).model_dump(exclude_unset=True)
    out = {k: v for k, v in validated.items() if v is not None}
    if endpoint == "chat":
        out["messages"] = [_flatten(m) for m in out["messages"]]
    return out


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": "\n".join(part["text"] for part in content)}
    return message
