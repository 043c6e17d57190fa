"""The gateway's view of quotas: which scopes a caller belongs to, what a request may cost, settling.

The limiter decides from counts the usage store reads and writes in one transaction per request, in the
database every worker and replica shares (SQLite file or PostgreSQL): together they never exceed a
limit, and a restart does not hand out a period's budget twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bastion.config import LimitSettings, QuotaSettings
from bastion.errors import BastionError
from bastion.quota.limiter import Limiter, Limits, QuotaExceeded, Reservation, period_start
from bastion.quota.store import Settlement, UsageStore
from bastion.store import Target

log = logging.getLogger("bastion.quota")

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
    settled: bool = False


class Quotas:
    """Reserve and settle requests against the configured key, group and organisation limits.

    Every decision is one transaction in the shared store, so workers and replicas with the same
    ``[quotas]`` settings enforce one set of limits together. ``clock`` is wall time (``time.time``):
    windows and leases are compared across hosts.
    """

    def __init__(self, settings: QuotaSettings, store: UsageStore,
                 clock: Callable[[], float] = time.time, synchronise: bool = True) -> None:
        self.settings = settings
        self.store = store
        self._local_clock = clock
        #: seconds to add to this host's clock to read PostgreSQL's (measured at each lease renewal)
        self._offset = 0.0
        self._synchronise = synchronise
        limits = {"org": _limits(settings.organisation)}
        limits.update({f"group:{g}": _limits(s) for g, s in settings.groups.items()})
        self.limiter = Limiter(limits)
        self._key_limits = _limits(settings.key)
        #: this process's lease on its reservations (a new one each start: a restarted replica's old
        #: holds expire with the old lease)
        self.owner = uuid.uuid4().hex
        self._period = self._current_period()
        self._renewer: asyncio.Task[None] | None = None
        self.renew()

    @classmethod
    def open(cls, settings: QuotaSettings, database: Target) -> Quotas | None:
        """Quotas over the usage store in ``database``, or None when quotas are off."""
        return cls(settings, UsageStore(database)) if settings.enabled else None

    def start(self) -> None:
        """Renew this process's lease in the background (call on the running event loop)."""
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def stop(self) -> None:
        """Stop renewing; the lease is dropped, so holds this process left unsettled stop counting."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        try:
            await asyncio.to_thread(self.store.drop_owner, self.owner)
        except BastionError as exc:  # the store is away: the lease simply runs out
            log.warning("quota lease not dropped: %s", exc.message)

    def close(self) -> None:
        self.store.close()

    def clock(self) -> float:
        """Now, on the clock every replica shares: the database server's on PostgreSQL.

        Windows and leases are compared across hosts; a replica whose clock ran minutes behind would
        otherwise count in buckets the others have already left behind, and spend a minute's limit again.
        """
        return self._local_clock() + self._offset

    def renew(self) -> None:
        """Extend this process's lease by ``lease_s`` and sweep expired holds and old window buckets."""
        if self._synchronise:
            before = self._local_clock()
            server = self.store.database_time()
            if server is not None:  # the server read it about half way through the round trip
                self._offset = server - (before + self._local_clock()) / 2
        now = self.clock()
        self.store.renew(self.owner, now + self.settings.lease_s, now)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await asyncio.to_thread(self.renew)
            except BastionError as exc:  # the store is away: holds lapse if it stays away past the lease
                log.warning("quota lease not renewed: %s", exc.message)

    def _current_period(self) -> str:
        return period_start(self.settings.period, datetime.fromtimestamp(self.clock(), UTC))

    def scopes(self, key_id: str, groups: tuple[str, ...]) -> tuple[str, ...]:
        """The scopes a key's requests count against: itself, each of its groups, the organisation."""
        scope = f"key:{key_id}"
        if self._key_limits != Limits():
            self.limiter.set_limits(scope, self._key_limits)
        return (scope, *(f"group:{g}" for g in groups), "org")

    async def reserve(
        self, key_id: str, groups: tuple[str, ...], body: dict[str, Any], max_tokens: int
    ) -> Held:
        """Hold one request and the most tokens it can use in every scope, or raise QuotaExceeded (429).

        On SQLite the transaction runs on the event loop when the file is free (it is shorter than a
        thread hop) and in a thread when another process holds it; on PostgreSQL always in a thread.
        """
        self._period = self._current_period()
        limits = self.limiter.limited(self.scopes(key_id, groups))
        args = (self.limiter, limits, prompt_bound(body) + max_tokens, self._period, self.owner, self.clock(),
                uuid.uuid4().hex)
        try:
            reservation = self.store.try_reserve(*args)
            if reservation is None:
                reservation = await asyncio.to_thread(self.store.reserve, *args)
        except QuotaExceeded as exc:
            if math.isinf(exc.retry_after_s):
                exc.retry_after_s = self._seconds_to_next_period()
            raise
        return Held(reservation, key_id)

    async def settle(
        self, held: Held, model: str, tokens_in: int, tokens_out: int, reported: bool = True,
        seconds: float = 0.0,
    ) -> None:
        """Charge what was really used and record it durably (budgets, window and daily usage).

        ``reported`` False: the backend could not say what the request cost (an upstream that sent no
        usage), so the whole reservation is charged; charging the zero it did report made such an
        upstream free for every budget (red team, wave 2).
        """
        if held.settled:
            return
        held.settled = True
        reserved = held.reservation.tokens
        charged = tokens_in + tokens_out if reported else max(reserved, tokens_in + tokens_out)
        now = self.clock()
        row = Settlement(held.reservation, datetime.fromtimestamp(now, UTC).date().isoformat(), held.key_id,
                         model, tokens_in, tokens_out, charged, seconds)
        # Durable before the response either way; in a thread only when the database is busy.
        if not self.store.try_settle(row, now):
            await asyncio.to_thread(self.store.settle, row, now)

    @staticmethod
    def headers(held: Held | None) -> dict[str, str]:
        """``x-ratelimit-*`` headers for a response to this reservation (as counted when it was taken)."""
        room = held.reservation.headroom if held is not None else None
        return room.headers() if room else {}

    def _seconds_to_next_period(self) -> float:
        now = datetime.fromtimestamp(self.clock(), UTC)
        start = datetime.fromisoformat(self._period).replace(tzinfo=UTC)
        if self.settings.period == "day":
            end = start + timedelta(days=1)
        elif self.settings.period == "week":
            end = start + timedelta(days=7)
        else:
            end = (start + timedelta(days=32)).replace(day=1)
        return max((end - now).total_seconds(), 1.0)
