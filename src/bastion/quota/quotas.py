"""The gateway's view of quotas: which scopes a caller belongs to, what a request may cost, settling.

The limiter (in memory, on the event loop) decides; the usage store (SQLite) remembers what budgets
already spent, so a restart does not hand out a period's budget twice.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bastion.config import LimitSettings, QuotaSettings
from bastion.quota.limiter import Limiter, Limits, QuotaExceeded, Reservation, period_start
from bastion.quota.store import UsageStore
from bastion.store import Target

#: template tokens a chat message can add around its text (role markers, separators), generously
PER_MESSAGE_OVERHEAD = 16


def _limits(s: LimitSettings) -> Limits:
    return Limits(s.rpm, s.tpm, s.budget_tokens)


#: request fields that are not text a model reads; every other field (tools, tool_choice,
#: response_format, suffix, vendor extensions ...) may reach the prompt, so its JSON is counted
NOT_PROMPT = frozenset(
    {
        "model", "messages", "prompt", "input", "max_tokens", "max_completion_tokens", "temperature",
        "top_p", "n", "stream", "stream_options", "stop", "seed", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "user", "echo", "encoding_format", "dimensions",
        "parallel_tool_calls",
    }
)


def _json_bytes(value: Any) -> int:
    return len(orjson.dumps(value))


def prompt_bound(body: dict[str, Any]) -> int:
    """An upper bound on the prompt's tokens: one per byte of text (a BPE token is at least one byte).

    Text is not only the messages: an upstream reads tool definitions, a message's tool calls and name,
    a completion's suffix into the prompt too. Counting only message content let 40 KB of tool
    descriptions through on a reservation of 50 tokens (red team, wave 2).
    """
    extra = sum(_json_bytes(v) for k, v in body.items() if k not in NOT_PROMPT)
    if "messages" in body:
        messages = body["messages"]
        texts = [str(m.get("content") or "") for m in messages]
        around = sum(_json_bytes(v) for m in messages for k, v in m.items() if k not in ("role", "content"))
        return sum(len(t.encode()) for t in texts) + around + extra + PER_MESSAGE_OVERHEAD * (len(texts) + 1)
    value = body.get("prompt", body.get("input", ""))
    items = value if isinstance(value, list) else [value]
    return sum(len(str(i).encode()) for i in items) + extra + PER_MESSAGE_OVERHEAD


@dataclass
class Held:
    """A reservation and who it belongs to, until settled."""

    reservation: Reservation
    key_id: str


class Quotas:
    """Reserve and settle requests against the configured key, group and organisation limits."""

    def __init__(self, settings: QuotaSettings, store: UsageStore) -> None:
        self.settings = settings
        self.store = store
        limits = {"org": _limits(settings.organisation)}
        limits.update({f"group:{g}": _limits(s) for g, s in settings.groups.items()})
        self.limiter = Limiter(limits)
        self._key_limits = _limits(settings.key)
        self._loaded: set[str] = set()  # keys whose stored budget use has been loaded this period
        self._period = self._current_period()
        for scope in limits:
            self.limiter.load_budget(scope, store.budget_used(scope, self._period))

    @classmethod
    def open(cls, settings: QuotaSettings, database: Target) -> Quotas | None:
        """Quotas over the usage store in ``database``, or None when quotas are off."""
        return cls(settings, UsageStore(database)) if settings.enabled else None

    def close(self) -> None:
        self.store.close()

    def _current_period(self) -> str:
        return period_start(self.settings.period, datetime.now(UTC))

    def scopes(self, key_id: str, groups: tuple[str, ...]) -> tuple[str, ...]:
        """The scopes a key's requests count against: itself, each of its groups, the organisation."""
        scope = f"key:{key_id}"
        if self._key_limits != Limits():
            self.limiter.set_limits(scope, self._key_limits)
            if key_id not in self._loaded:
                self.limiter.load_budget(scope, self.store.budget_used(scope, self._period))
                self._loaded.add(key_id)
        return (scope, *(f"group:{g}" for g in groups), "org")

    def reserve(self, key_id: str, groups: tuple[str, ...], body: dict[str, Any], max_tokens: int) -> Held:
        """Hold one request and the most tokens it can use, or raise QuotaExceeded (429)."""
        self._roll_period()
        try:
            reservation = self.limiter.reserve(self.scopes(key_id, groups), prompt_bound(body) + max_tokens)
        except QuotaExceeded as exc:
            if math.isinf(exc.retry_after_s):
                exc.retry_after_s = self._seconds_to_next_period()
            raise
        return Held(reservation, key_id)

    async def settle(
        self, held: Held, model: str, tokens_in: int, tokens_out: int, reported: bool = True,
        seconds: float = 0.0,
    ) -> None:
        """Charge what was really used and record it durably (budgets and daily usage).

        ``reported`` False: the backend could not say what the request cost (an upstream that sent no
        usage), so the whole reservation is charged; charging the zero it did report made such an
        upstream free for every budget (red team, wave 2).
        """
        if held.reservation.settled:
            return
        charged = tokens_in + tokens_out if reported else max(held.reservation.tokens, tokens_in + tokens_out)
        self.limiter.settle(held.reservation, charged)
        row = (held.reservation.scopes, self._period, datetime.now(UTC).date().isoformat(), held.key_id,
               model, tokens_in, tokens_out, charged, seconds)
        # Durable before the response either way; in a thread only when the database is busy.
        if not self.store.try_record(*row):
            await asyncio.to_thread(self.store.record, *row)

    def headers(self, key_id: str, groups: tuple[str, ...]) -> dict[str, str]:
        """``x-ratelimit-*`` headers for a response to this key."""
        room = self.limiter.headroom(self.scopes(key_id, groups))
        return room.headers() if room else {}

    def _roll_period(self) -> None:
        period = self._current_period()
        if period != self._period:  # a new budget period: budgets start again from what is stored
            self._period = period
            self._loaded.clear()
            for scope in self.limiter.scope_names():
                self.limiter.load_budget(scope, self.store.budget_used(scope, period))

    def _seconds_to_next_period(self) -> float:
        now = datetime.now(UTC)
        start = datetime.fromisoformat(self._period).replace(tzinfo=UTC)
        if self.settings.period == "day":
            end = start + timedelta(days=1)
        elif self.settings.period == "week":
            end = start + timedelta(days=7)
        else:
            end = (start + timedelta(days=32)).replace(day=1)
        return max((end - now).total_seconds(), 1.0)
