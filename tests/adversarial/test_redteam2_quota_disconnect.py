"""Red team 2: an API key holder hangs up on non-streamed answers to spend a budget's tokens for free.

The attack: a non-streamed request reserves its upper bound and reaches an upstream that takes seconds
to generate; the caller hangs up half way, again and again. Had the gateway settled a hung-up request
as "reported, zero tokens", one key could run any number of requests on a budget that fits one. It does
not (the defence held, red team 2): the hung-up request is charged what the upstream reported, and the
next ones are refused before they reach the upstream. Kept as a test because nothing else covers a
client disconnect on a non-streamed answer against a budget.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bastion.quota import UsageStore
from bastion.quota.limiter import period_start
from tests.conftest import raw_sql
from tests.serve import mock_upstream
from tests.serve.replicas import replicas

#: the upstream "generates" this long before answering (the caller hangs up half way)
GENERATE_S = 3.0
USAGE = {"prompt_tokens": 20, "completion_tokens": 150, "total_tokens": 170}
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "model": "up", "created": 0,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * 150},
                                  "finish_reason": "stop"}], "usage": USAGE}).encode()


@contextlib.contextmanager
def _slow_upstream() -> Iterator[tuple[int, list[float]]]:
    """An OpenAI-compatible upstream (outside the machine in real life) that takes GENERATE_S to answer."""
    received: list[float] = []

    class Handler(mock_upstream.Handler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(time.monotonic())
            time.sleep(GENERATE_S)
            with contextlib.suppress(OSError):  # the gateway may have hung up too
                self._send(ANSWER)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_hanging_up_on_answers_does_not_spend_a_budget_for_free(tmp_path: Path) -> None:
    # Budget 200; each request reserves 33 (prompt bound) + 150 = 183 and really costs 170.
    config = "[quotas]\nenabled = true\n[quotas.organisation]\nbudget_tokens = 200\n"
    ask = {"model": "slow", "messages": [{"role": "user", "content": "q"}], "max_tokens": 150}
    with _slow_upstream() as (port, received), replicas(
        tmp_path, count=1, admit={}, config=config,
        models=f'[[models]]\nname = "slow"\nbackend = "openai"\nurl = "http://127.0.0.1:{port}/v1"\n'
               'upstream_model = "up"\nretries = 0\n',
    ) as running:
        headers = {"Authorization": f"Bearer {running.key}"}
        statuses = []
        for _ in range(3):
            try:
                r = httpx.post(running.bases[0] + "/v1/chat/completions", json=ask, headers=headers,
                               timeout=httpx.Timeout(GENERATE_S / 2, connect=5))
                statuses.append(r.status_code)
            except httpx.ReadTimeout:
                statuses.append(0)  # hung up while the upstream generates
            deadline = time.monotonic() + 15
            while raw_sql(running.store, "SELECT count(*) FROM quota_hold")[0][0]:
                assert time.monotonic() < deadline, "the hung-up request never settled"
                time.sleep(0.1)
        store = UsageStore(running.store)
        spent = store.budget_used("org", period_start("month", datetime.now(UTC)))
        store.close()
    # What must hold: the first request is charged (at least what it reserved or what it used), so the
    # next ones do not fit the budget and never reach the upstream.
    assert spent >= 170, (spent, statuses)
    assert len(received) == 1, (len(received), statuses, spent)
