"""JSON parsing that refuses what parsers disagree on."""

from __future__ import annotations

from typing import Any


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses duplicate keys (raises ValueError).

    Parsers disagree on duplicates (first wins in some, last in Python's), so a header, config or
    signature with two values for one key could mean different things to the loader and to us.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out
