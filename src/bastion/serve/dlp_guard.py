"""The gateway's data-loss guard: scan a request once, then ask Cedar per candidate model what may go.

The request flow calls two functions:

    inspection = await guard.inspect(endpoint, body)            # once, after authorisation
    outgoing = guard.outgoing(inspection, principal, model)     # per candidate in the route (Cedar)

``outgoing`` returns the body to send (as is, pseudonymised or redacted) and restores placeholders in
the answer (:meth:`Outgoing.reply`, :meth:`Outgoing.stream`), or raises DataLossBlocked so the route
moves on to the next candidate. A detector error or timeout raises DetectorFailed (503): a request
that could not be checked is never sent. What the audit entry records is :attr:`Inspection.record`:
the action, finding types and counts, never values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bastion.config import DlpSettings
from bastion.dlp import (
    Document,
    Findings,
    Pseudonymiser,
    Scanner,
    StreamRestorer,
    StreamScanner,
    rewrite,
    scan_document,
    texts,
)
from bastion.errors import BastionError, DataLossBlocked, DetectorFailed
from bastion.keys import Principal
from bastion.policy import DlpContext, ModelResource
from bastion.serve.auth import Authorizer

log = logging.getLogger("bastion.serve.dlp")
#: requests with at most this many characters of text are scanned on the event loop (the scan is linear
#: and takes well under a millisecond there); longer ones in a worker thread under ``[dlp] timeout_ms``
INLINE_CHARS = 4096


@dataclass
class Inspection:
    """One request's texts and findings, and what the audit entry will say about them."""

    endpoint: str
    body: dict[str, Any]
    doc: Document
    findings: Findings
    context: DlpContext
    #: for the audit entry: action per model tried, finding types/counts, answer findings
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outgoing:
    """What goes to one model: the body, the transform applied, and the map to restore the answer."""

    body: dict[str, Any]
    transform: str
    pseudonymiser: Pseudonymiser | None
    inspection: Inspection
    scanner: Scanner

    @property
    def rewritten(self) -> bool:
        return self.transform != "none"

    def reply(self, raw: bytes) -> bytes:
        """A non-streamed answer with placeholders restored; its findings go to the audit record."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        answer: list[str] = []
        for choice in doc.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            holder, key = (message, "content") if isinstance(message, dict) else (choice, "text")
            if isinstance(holder, dict) and isinstance(holder.get(key), str):
                answer.append(holder[key])
                holder[key] = self._restore(holder[key])
            for call in (message or {}).get("tool_calls") or () if isinstance(message, dict) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    answer.append(fn["arguments"])
                    fn["arguments"] = self._restore(fn["arguments"])
        self._record_answer(self.scanner.scan("\n".join(answer)) if answer else Findings())
        return orjson.dumps(doc) if self.pseudonymiser is not None else raw

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The streamed chunks with placeholders restored, also when one is cut across chunks."""
        restorers: dict[int, StreamRestorer] = {}
        answer = StreamScanner(self.scanner)
        last: dict[str, Any] | None = None
        try:
            async for raw in chunks:
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    yield raw
                    continue
                for choice in doc.get("choices") or ():
                    holder, key = _text_slot(choice)
                    if holder is None:
                        continue
                    text = holder.get(key)
                    if isinstance(text, str):
                        answer.feed(text)
                    if self.pseudonymiser is None:
                        continue
                    r = restorers.setdefault(int(choice.get("index", 0)), self.pseudonymiser.restorer())
                    out = r.feed(text) if isinstance(text, str) else ""
                    if choice.get("finish_reason"):
                        out += r.flush()
                    if isinstance(text, str) or out:
                        holder[key] = out
                last = doc
                yield orjson.dumps(doc) if self.pseudonymiser is not None else raw
            held = {i: r.flush() for i, r in restorers.items()}
            if last is not None and any(held.values()):
                yield orjson.dumps(_tail_chunk(last, self.inspection.endpoint, held))
        finally:
            answer.close()
            self._record_answer(answer.findings)
            await chunks.aclose()  # type: ignore[attr-defined]

    def _restore(self, text: str) -> str:
        return self.pseudonymiser.restore(text) if self.pseudonymiser is not None else text

    def _record_answer(self, found: Findings) -> None:
        self.inspection.record["answer_findings"] = found.counts()


class DlpGuard:
    """Scanner, Cedar authoriser and scan timeout, shared by every request."""

    def __init__(self, scanner: Scanner, authorizer: Authorizer, timeout_s: float) -> None:
        self.scanner = scanner
        self.authorizer = authorizer
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: DlpSettings, authorizer: Authorizer) -> DlpGuard:
        """The guard the ``[dlp]`` settings describe."""
        return cls(Scanner.from_settings(settings), authorizer, settings.timeout_ms / 1000)

    async def inspect(self, endpoint: str, body: dict[str, Any]) -> Inspection:
        """Scan every text of the request; DetectorFailed if a detector fails or runs out of time."""
        doc = Document.of(texts(endpoint, body))
        try:
            if sum(map(len, doc.texts)) <= INLINE_CHARS:
                # A short prompt scans in well under a millisecond: a thread hop would cost more.
                found = scan_document(self.scanner, doc)
            else:
                # Off the event loop, so a long scan cannot stall other requests; the timeout answers
                # the client even if the scan thread is still running (it finishes and is discarded).
                scanning = asyncio.to_thread(scan_document, self.scanner, doc)
                found = await asyncio.wait_for(scanning, self.timeout_s)
        except TimeoutError as exc:
            raise DetectorFailed(
                f"the data-loss scan took longer than {self.timeout_s * 1000:.0f} ms; "
                "the request was not sent",
                hint="Send a shorter request, or raise [dlp] timeout_ms.",
            ) from exc
        except BastionError:
            raise
        except Exception as exc:  # noqa: BLE001  fail closed on anything the scan raises
            log.exception("data-loss scan failed")
            raise DetectorFailed(
                f"the data-loss scan failed ({type(exc).__name__}); the request was not sent"
            ) from exc
        counts = found.category_counts()
        ctx = DlpContext(
            types=frozenset(found.counts()),
            markings=counts["marking"],
            personal=counts["personal"],
            secrets=counts["secret"],
            marking_level=found.marking_level,
            caveats=frozenset(found.caveats),
        )
        record = {"findings": found.counts(), "marking_level": found.marking_level, "actions": {}}
        return Inspection(endpoint, body, doc, found, ctx, record)

    def outgoing(self, inspection: Inspection, principal: Principal, resource: ModelResource) -> Outgoing:
        """What may go to the model: the body as is, pseudonymised or redacted; DataLossBlocked if nothing."""
        actions: dict[str, str] = inspection.record["actions"]
        model = resource.name
        if inspection.context.empty:
            actions[model] = "none"
            return Outgoing(inspection.body, "none", None, inspection, self.scanner)
        try:
            ctx = inspection.context
            transform = self.authorizer.dlp_transform(principal, inspection.endpoint, resource, ctx)
        except DataLossBlocked:
            actions[model] = "block"
            raise
        actions[model] = transform
        if transform == "none":
            return Outgoing(inspection.body, "none", None, inspection, self.scanner)
        p = Pseudonymiser("pseudonymise" if transform == "pseudonymise" else "redact")
        body = rewrite(inspection.endpoint, inspection.body, p.apply(inspection.doc, inspection.findings))
        return Outgoing(body, transform, p if transform == "pseudonymise" else None, inspection, self.scanner)


def _text_slot(choice: Any) -> tuple[dict[str, Any] | None, str]:
    """Where a streamed choice keeps its text: ``delta.content`` (chat) or ``text`` (completion)."""
    if not isinstance(choice, dict):
        return None, ""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta, "content"
    return choice, "text"


def _tail_chunk(last: dict[str, Any], endpoint: str, held: dict[int, str]) -> dict[str, Any]:
    """A last chunk carrying text that was held back when the stream ended without a finish_reason."""
    choices = [
        {"index": i, "delta": {"content": text}, "finish_reason": None}
        if endpoint == "chat"
        else {"index": i, "text": text, "finish_reason": None}
        for i, text in held.items()
        if text
    ]
    return {**{k: v for k, v in last.items() if k not in ("choices", "usage")}, "choices": choices}
