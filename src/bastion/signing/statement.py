"""A :class:`Manifest` as an in-toto Statement v1 with the model_signing v1.0 predicate, and back.

The predicate layout is model_signing's (``docs/model_signing_format.md``): one subject (the model
name and the sha256 over all resource digests), ``predicate.serialization`` (how to re-hash) and
``predicate.resources`` (name, algorithm, digest). Reading back is strict: every resource must use
the algorithm the serialization names, digests must have the right length, names must be unique,
and the subject digest must match the resources, so a payload cannot say one thing and mean another.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bastion.errors import UnusableInput
from bastion.formats.strict_json import no_duplicate_keys
from bastion.hashing import HASH_TYPES, Manifest, Resource
from bastion.hashing.manifest import sort_key

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"
_DIGEST_HEX = {"sha256": 64, "blake2b": 128}
_HINT = "The signature was not made by model signing v1.0 or is damaged; ask the signer for it again."


def to_statement(manifest: Manifest) -> dict[str, Any]:
    """The in-toto statement for ``manifest``."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name, "digest": {"sha256": manifest.root_digest()[7:]}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": manifest.serialization(),
            "resources": [
                {"name": r.name, "algorithm": r.algorithm, "digest": r.digest} for r in manifest.resources
            ],
        },
    }


def statement_bytes(manifest: Manifest) -> bytes:
    """The DSSE payload: the statement as JSON with sorted keys (stable bytes for golden files)."""
    return json.dumps(to_statement(manifest), sort_keys=True, indent=2).encode()


def _fail(source: str, what: str) -> UnusableInput:
    return UnusableInput(f"{source}: {what}", hint=_HINT)


def _int(value: Any, what: str, source: str) -> int:
    # Protobuf Struct numbers are doubles, so model_signing writes shard_size as 1000000000.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value <= 0:
        raise _fail(source, f"{what} is not a positive integer")
    return int(value)


def from_statement(payload: bytes, source: str) -> Manifest:
    """Read a signed payload back into a Manifest, checking that it is internally consistent."""
    try:
        doc = json.loads(payload, object_pairs_hook=no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise _fail(source, f"the signed payload is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise _fail(source, "the signed payload is nested too deeply") from exc
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise _fail(source, "the signed payload is not an in-toto Statement v1")
    ptype = doc.get("predicateType")
    if ptype == LEGACY_PREDICATE_TYPE:
        raise UnusableInput(
            f"{source} uses the pre-1.0 model_signing format ({LEGACY_PREDICATE_TYPE})",
            hint="Re-sign the model with model_signing >= 1.0 or 'bastion sign'.",
        )
    if ptype != PREDICATE_TYPE:
        raise _fail(source, f"unknown predicate type {ptype!r}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _fail(source, "expected exactly one subject")
    name = subjects[0].get("name")
    digest = subjects[0].get("digest")
    if not isinstance(name, str) or not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
        raise _fail(source, "the subject has no name or sha256 digest")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("serialization"), dict):
        raise _fail(source, "the predicate has no serialization")
    ser = predicate["serialization"]

    method = ser.get("method")
    hash_type = ser.get("hash_type")
    if method not in ("files", "shards"):
        raise _fail(source, f"unknown serialization method {method!r}")
    if hash_type not in HASH_TYPES:
        raise UnusableInput(
            f"{source} was hashed with {hash_type!r}, which Bastion does not support",
            hint=f"Re-sign with one of: {', '.join(HASH_TYPES)}.",
        )
    if ser.get("allow_symlinks", False) is not False:
        raise UnusableInput(
            f"{source} was made with allow_symlinks=true",
            hint="Bastion never follows symlinks in a model; replace them with files and re-sign.",
        )
    ignores = ser.get("ignore_paths", [])
    if not isinstance(ignores, list) or not all(isinstance(p, str) for p in ignores):
        raise _fail(source, "ignore_paths is not a list of strings")
    shard_size = _int(ser.get("shard_size"), "shard_size", source) if method == "shards" else None
    algorithm = hash_type if shard_size is None else f"{hash_type}-sharded-{shard_size}"

    raw = predicate.get("resources")
    if not isinstance(raw, list):
        raise _fail(source, "the predicate has no resources")
    resources: list[Resource] = []
    seen: set[str] = set()
    for item in raw:
        resources.append(_resource(item, algorithm, hash_type, shard_size is not None, source))
        if resources[-1].name in seen:
            raise _fail(source, f"resource {resources[-1].name!r} appears twice")
        seen.add(resources[-1].name)
    # The subject digest is over the resources *in the order the payload lists them*.
    manifest = Manifest(name, hash_type, method, tuple(resources), shard_size, tuple(ignores))
    if manifest.root_digest()[7:] != digest["sha256"]:
        raise _fail(source, "the subject digest does not match the listed resources")
    return Manifest(
        name, hash_type, method, tuple(sorted(resources, key=sort_key)), shard_size, tuple(ignores)
    )


_SHARD = re.compile(r"^(?P<path>.+):(?P<start>\d+):(?P<end>\d+)$", re.S)


def _resource(item: Any, algorithm: str, hash_type: str, sharded: bool, source: str) -> Resource:
    if not isinstance(item, dict):
        raise _fail(source, "a resource is not an object")
    name, alg, dig = item.get("name"), item.get("algorithm"), item.get("digest")
    if not isinstance(name, str) or not isinstance(dig, str):
        raise _fail(source, "a resource has no name or digest")
    if alg != algorithm:
        raise _fail(source, f"resource {name!r} uses {alg!r} but the serialization says {algorithm!r}")
    if len(dig) != _DIGEST_HEX[hash_type] or not all(c in "0123456789abcdef" for c in dig):
        raise _fail(source, f"resource {name!r} has a malformed {hash_type} digest")
    if not sharded:
        return Resource(name, 0, 0, alg, dig)
    m = _SHARD.match(name)
    if m is None or int(m["end"]) <= int(m["start"]):
        raise _fail(source, f"shard resource {name!r} is not 'path:start:end'")
    return Resource(m["path"], int(m["start"]), int(m["end"]), alg, dig, sharded=True)
