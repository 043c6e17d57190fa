"""The texts of an OpenAI request body, and the same body with those texts rewritten.

Scanned: chat messages (string content and ``text`` parts), tool-call arguments, ``name`` fields,
tool results, completion prompts and embedding inputs. Token-id prompts and inputs cannot be read as
text, so they are refused when DLP is on rather than let through unchecked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bastion.errors import UsageError

Rewrite = Callable[[str], str]


def texts(endpoint: str, body: dict[str, Any]) -> list[str]:
    """Every text of ``body`` in a fixed order (the order :func:`rewrite` expects them back)."""
    out: list[str] = []

    def keep(text: str) -> str:
        out.append(text)
        return text

    _walk(endpoint, body, keep)
    return out


def rewrite(endpoint: str, body: dict[str, Any], new: list[str]) -> dict[str, Any]:
    """A copy of ``body`` with its texts replaced, in :func:`texts` order, by ``new``."""
    it = iter(new)
    copied = copy.deepcopy(body)
    _walk(endpoint, copied, lambda _old: next(it))
    return copied


def _walk(endpoint: str, body: dict[str, Any], fn: Rewrite) -> None:
    if endpoint == "chat":
        for msg in body.get("messages") or ():
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            if isinstance(content, str):
                msg["content"] = fn(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        part["text"] = fn(part["text"])
                    elif isinstance(part, dict) and part.get("type") not in (None, "text"):
                        raise UsageError(
                            f"message content of type {part.get('type')!r} cannot be checked for data loss",
                            hint="Send text parts only to this model.",
                            param="messages",
                        )
            if isinstance(msg.get("name"), str):
                msg["name"] = fn(msg["name"])
            for call in msg.get("tool_calls") or ():
                fn_part = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn_part, dict) and isinstance(fn_part.get("arguments"), str):
                    fn_part["arguments"] = fn(fn_part["arguments"])
    elif endpoint == "completion":
        body["prompt"] = _strings(body.get("prompt"), fn, "prompt")
    elif endpoint == "embedding":
        body["input"] = _strings(body.get("input"), fn, "input")


def _strings(value: Any, fn: Rewrite, param: str) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [fn(v) for v in value]
    if value is None:
        return value
    raise UsageError(
        f"{param} given as token ids cannot be checked for data loss",
        hint=f"Send {param} as text (a string or a list of strings).",
        param=param,
    )
