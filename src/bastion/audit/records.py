"""What the audit log records: request and admin records, and their exact leaf encoding.

A leaf is the UTF-8 JSON object ``{"v":1,"seq":N,"kind":...,...}`` with keys in a fixed order and no
whitespace. The bytes are stored verbatim and shipped verbatim in proofs, so a third party hashes exactly
what was signed and never has to re-canonicalise JSON. ``seq`` (the leaf index) is inside the leaf, so
moving, deleting or reordering rows is caught at the row where it happened.

Bodies are never part of a leaf: only their SHA-256 is (``store_bodies = hashes | full``), so pruning
bodies leaves the tree verifiable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from bastion.errors import IntegrityError, UsageError

LEAF_VERSION = 1
StoreBodies = Literal["none", "hashes", "full"]


def utc_now() -> str:
    """The current time as RFC 3339 UTC with milliseconds (the format of every audit timestamp)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RequestRecord:
    """One gateway request, as the gateway saw it when the response finished (or was cut off).

    Pass the bodies (``request_body``/``response_body``) or only their digests; with bodies the log
    computes the digests itself. The principal is the API key *id*, never the key.
    """

    request_id: str
    principal: str
    model: str
    weights_digest: str
    backend: str
    decision: str
    status: int
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    request_sha256: str | None = None
    response_sha256: str | None = None
    partial: bool = False
    #: candidates of the route that did not answer, with why: ((model, reason code), ...)
    skipped: tuple[tuple[str, str], ...] = ()
    time: str = field(default_factory=utc_now)
    request_body: bytes | None = field(default=None, repr=False, compare=False)
    response_body: bytes | None = field(default=None, repr=False, compare=False)
    #: data-loss prevention: action taken and finding types/counts (never values); None when off
    dlp: dict[str, Any] | None = None
    #: the body as sent to the model when DLP rewrote it (stored, encrypted, with store_bodies = full)
    sent_body: bytes | None = field(default=None, repr=False, compare=False)
    #: every call to a deployment ({"model", "outcome", "backoff_ms"}), when there was more than one
    attempts: tuple[dict[str, Any], ...] = ()
    #: retrieval: the collections searched and the chunks (ids, sha256) put in front of the model or
    #: returned to the caller; None for a request without retrieval
    retrieval: dict[str, Any] | None = None

    kind = "request"

    def leaf_fields(self, store_bodies: StoreBodies) -> dict[str, Any]:
        """The fields that go into the leaf, in leaf order (digests dropped with ``store_bodies=none``)."""
        req = _digest("request", self.request_body, self.request_sha256)
        resp = _digest("response", self.response_body, self.response_sha256)
        if store_bodies == "none":
            req = resp = None  # a digest of a short body can be brute-forced; 'none' records nothing of it
        return {
            "time": self.time,
            "request_id": self.request_id,
            "principal": self.principal,
            "model": self.model,
            "weights_digest": self.weights_digest,
            "backend": self.backend,
            "decision": self.decision,
            "status": self.status,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_ms": round(float(self.latency_ms), 3),
            "request_sha256": req,
            "response_sha256": resp,
            "partial": self.partial,
            # Only when a fallback was considered, so the leaves of plain requests keep their v1 form.
            **({"skipped": [{"model": m, "reason": r} for m, r in self.skipped]} if self.skipped else {}),
            # Only present when DLP ran, so leaves written before it existed keep their exact bytes.
            **({"dlp": self.dlp} if self.dlp is not None else {}),
            # Only with retries or failover, so single-attempt leaves keep their earlier bytes.
            **({"attempts": list(self.attempts)} if self.attempts else {}),
            # Likewise only with retrieval (leaves of other requests keep their exact bytes).
            **({"retrieval": self.retrieval} if self.retrieval is not None else {}),
        }

    def bodies(self) -> dict[str, bytes]:
        """The bodies given with the record, by part name."""
        out = {}
        if self.request_body is not None:
            out["request"] = self.request_body
        if self.response_body is not None:
            out["response"] = self.response_body
        if self.sent_body is not None:
            out["sent"] = self.sent_body
        return out

    def to_json(self) -> dict[str, Any]:
        """The record as plain data (digests as given or computed; bodies left out)."""
        return {"kind": self.kind, **self.leaf_fields("hashes")}


@dataclass(frozen=True)
class AdminRecord:
    """One administrative action (admit, revoke, key created, policy loaded ...) and who did it."""

    action: str
    actor: str
    before_digest: str | None = None
    after_digest: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=utc_now)

    kind = "admin"

    def leaf_fields(self, store_bodies: StoreBodies) -> dict[str, Any]:
        """The fields that go into the leaf, in leaf order."""
        return {
            "time": self.time,
            "actor": self.actor,  # right after time: see index_prefix()
            "action": self.action,
            "before_digest": self.before_digest,
            "after_digest": self.after_digest,
            "details": self.details,
        }

    def bodies(self) -> dict[str, bytes]:
        """Admin records carry no bodies."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """The record as plain data."""
        return {"kind": self.kind, **self.leaf_fields("hashes")}


Record = RequestRecord | AdminRecord


@dataclass(frozen=True)
class EntryRef:
    """Where an appended record landed: its leaf index, leaf hash and the time it became durable."""

    seq: int
    leaf_hash: str
    time: str

    def to_json(self) -> dict[str, Any]:
        """The reference as plain data."""
        return {"seq": self.seq, "leaf_hash": self.leaf_hash, "time": self.time}


def encode_leaf(seq: int, record: Record, store_bodies: StoreBodies) -> bytes:
    """The exact leaf bytes for ``record`` at index ``seq``."""
    doc = {"v": LEAF_VERSION, "seq": seq, "kind": record.kind, **record.leaf_fields(store_bodies)}
    try:
        return orjson.dumps(doc)
    except TypeError as exc:  # e.g. a non-JSON value in AdminRecord.details
        raise UsageError(f"audit record cannot be encoded as JSON: {exc}") from exc


def leaf_prefix(seq: int) -> bytes:
    """The bytes every leaf at index ``seq`` starts with (checked without parsing the JSON)."""
    return b'{"v":%d,"seq":%d,' % (LEAF_VERSION, seq)


def index_prefix(
    seq: int, kind: str, time: str, request_id: str | None, principal: str | None, model: str | None
) -> bytes:
    """The bytes a leaf must start with for its search columns to be truthful.

    Leaves put ``seq``, ``kind``, ``time`` and the searchable fields first, in a fixed order, so the
    verifier checks the index with one ``startswith`` instead of parsing a million JSON documents.
    """
    if kind == "request":
        fields: dict[str, Any] = {
            "kind": kind, "time": time, "request_id": request_id, "principal": principal, "model": model
        }  # fmt: skip
    elif request_id is None and model is None:
        fields = {"kind": kind, "time": time, "actor": principal}
    else:
        return b"\xff"  # an admin row with request columns: cannot match any leaf
    return leaf_prefix(seq) + orjson.dumps(fields)[1:-1] + b","


def decode_leaf(leaf: bytes, seq: int | None = None) -> dict[str, Any]:
    """Parse leaf bytes back into a mapping; IntegrityError if they are not a leaf at all."""
    try:
        value = orjson.loads(leaf)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        where = f"entry {seq}" if seq is not None else "a leaf"
        raise IntegrityError(
            f"{where} is not a JSON object: the stored leaf was damaged or edited",
            hint="Run 'bastion audit verify' to see everything that was changed.",
        )
    return value


def _digest(part: str, body: bytes | None, given: str | None) -> str | None:
    if body is None:
        return given
    actual = sha256_hex(body)
    if given is not None and given != actual:
        raise UsageError(f"{part}_sha256 does not match the {part} body given with the record")
    return actual


def parse_time(text: str, what: str = "time") -> str:
    """Normalise a user-given date or date-time to the audit timestamp format (UTC assumed if naive)."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{what} {text!r} is not a date", hint="Use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)."
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
