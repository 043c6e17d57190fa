"""The one JSON reader for artifact files: bounded, UTF-8 only, duplicate keys refused.

Every JSON file that comes with a model (``config.json``, tokenizer files, a safetensors header, a
shard index, a signature bundle) is read here, so a quirk is refused the same way everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput

MAX_JSON = 64 << 20  # tokenizer.json of a 262k vocabulary is ~30 MB


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


def loads_object(raw: bytes, origin: str) -> dict[str, Any]:
    """Parse ``raw`` as one JSON object; UnusableInput naming ``origin`` and the defect otherwise."""
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnusableInput(f"{origin}: not valid JSON: {exc}", hint="Fix or re-download the file.") from exc
    if not isinstance(data, dict):
        raise UnusableInput(f"{origin}: expected a JSON object", hint="Fix or re-download the file.")
    return data


def read_json(path: Path, limit: int = MAX_JSON) -> dict[str, Any]:
    """Load a JSON object from ``path`` with a size bound and duplicate-key refusal."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise UnusableInput(
                f"{path}: {size} bytes exceeds the {limit}-byte limit for a JSON file",
                hint="A real configuration file is far smaller; check where it came from.",
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc
    return loads_object(raw, str(path))
