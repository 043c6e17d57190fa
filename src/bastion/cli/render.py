"""Rendering for the CLI: Rich for people, exactly one JSON document with ``--json``; errors in one place."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console

from bastion.errors import BastionError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = "--json"


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as one JSON document, or call ``human`` to print it for people."""
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=_default).decode() + "\n")
        sys.stdout.flush()
    else:
        human()


def _default(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return to_json()
    return str(obj)


def render_error(exc: BastionError, as_json: bool) -> int:
    """Print ``exc`` (JSON on stdout with ``--json``, Rich on stderr otherwise); return its exit code."""
    if as_json:
        sys.stdout.write(orjson.dumps({"error": exc.to_json()}, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        err.print(f"[bold red]error:[/] {_escape(exc.message)}")
        if exc.hint:
            err.print(f"[yellow]hint:[/] {_escape(exc.hint)}")
    return exc.exit_code


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
