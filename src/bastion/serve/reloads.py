"""Reloads: a SIGHUP before the gateway can carry it out is remembered, not fatal; on PostgreSQL a
reload through one gateway reaches every gateway sharing the database.

``bastion policy reload`` and ``systemctl reload`` signal the pid in ``serve.pid``, which is written
before any model loads; the running gateway takes SIGHUP over only once its models are loaded. In
between, SIGHUP's default action would end the process (a single gateway, or each starting worker until
the parent gave up on them). So from the start until then a SIGHUP only sets a flag, and the gateway
reloads once when it takes over (it may have read the policy before the signal came).

``POST /admin/reload`` reloads the gateway it reached; with ``store.url`` it also announces the reload
through the database (:mod:`bastion.store.notify`), and every other gateway sharing it, on any host,
reloads the same way as on SIGHUP within a second. Without it (SQLite), ``serve --workers`` passes the
reload to the sibling workers by SIGHUP through the parent.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType

from bastion.store import Listener, PostgresTarget, Target, listen, listener_for

# A plain flag, not a threading.Event: a signal handler must not take a lock its thread may hold.
_pending = [False]


def _remember(sig: int, frame: FrameType | None) -> None:
    _pending[0] = True


def defer_reloads() -> None:
    """Until the running gateway installs its own SIGHUP handler, remember a reload instead of dying."""
    _pending[0] = False
    signal.signal(signal.SIGHUP, _remember)


def reload_pending() -> bool:
    """True, once, when a reload was asked for before the gateway could carry it out."""
    pending, _pending[0] = _pending[0], False
    return pending


def listen_for_changes(target: Target, on_reload: Callable[[], None]) -> Listener | None:
    """On PostgreSQL, this process's listener (changes and announced reloads); None on SQLite."""
    return listen(target, on_reload) if isinstance(target, PostgresTarget) else None


async def announce_reload(target: Target) -> bool:
    """Tell every other gateway sharing ``target`` to reload; False when there is no way to (SQLite, or
    the database unreachable: logged)."""
    listener = listener_for(target.url) if isinstance(target, PostgresTarget) else None
    if listener is None:
        return False
    return await asyncio.to_thread(listener.announce_reload)
