"""A reload asked for (SIGHUP) before the gateway can carry it out is remembered, not fatal.

``bastion policy reload`` and ``systemctl reload`` signal the pid in ``serve.pid``, which is written
before any model loads; the running gateway takes SIGHUP over only once its models are loaded. In
between, SIGHUP's default action would end the process (a single gateway, or each starting worker until
the parent gave up on them). So from the start until then a SIGHUP only sets a flag, and the gateway
reloads once when it takes over (it may have read the policy before the signal came).
"""

from __future__ import annotations

import signal
from types import FrameType

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
