"""``serve --workers N``: N gateway processes accepting on one listening socket (pre-fork).

The parent binds the socket and holds the pid file, then forks the workers before any model is loaded
or any thread is started (forking a process with threads or open SQLite connections is unsafe). Each
worker builds its own gateway: its own backends, database connections and audit committer. They share
only what a second host would share: the store and the model files. So N workers behave as N replicas
behind a load balancer, and the kernel balances connections between them.

The parent supervises: SIGTERM/SIGINT stop every worker (each finishes its requests, as uvicorn does on
SIGTERM); SIGHUP is passed to every worker (``bastion policy reload``); a worker that dies is started
again, unless workers keep dying right after start (a configuration they cannot serve): then the
parent stops the rest and exits with the dead worker's code, rather than forking in a loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from bastion.errors import BastionError, internal_error
from bastion.serve.reloads import defer_reloads

log = logging.getLogger("bastion.serve.workers")

#: a worker that exits sooner than this after its start counts as a failed start
QUICK_DEATH_S = 10.0
#: this many failed starts in a row end the whole service
MAX_QUICK_DEATHS = 3
#: how long stopping workers may take before they are killed
STOP_GRACE_S = 30.0
#: set in each worker's environment: a worker passes reloads to its siblings through the parent
WORKER_ENV = "BASTION_SERVE_WORKER"
_HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def reload_siblings() -> bool:
    """In a worker: ask the parent to pass SIGHUP (reload) to every worker. False when not a worker."""
    if os.environ.get(WORKER_ENV) != "1":
        return False
    os.kill(os.getppid(), signal.SIGHUP)
    return True


@dataclass
class _Supervisor:
    count: int
    run_worker: Callable[[], None]
    pids: dict[int, float] = field(default_factory=dict)  # pid -> start time
    stopping: int | None = None  # the signal that asked us to stop
    quick_deaths: int = 0
    exit_code: int = 0

    def spawn(self) -> None:
        # Signals stay blocked across the fork until the worker has dropped the parent's handlers: a
        # SIGTERM landing in between would otherwise run the parent's handler in the worker.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the parent's stack (nor its finally blocks)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own once it runs
                defer_reloads()  # SIGHUP's default would end a worker still loading its models
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
                os._exit(_worker_main(self.run_worker))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        self.pids[pid] = time.monotonic()
        log.info("worker %d started (%d of %d)", pid, len(self.pids), self.count)

    def signal_all(self, sig: int) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def on_stop(self, sig: int, frame: FrameType | None) -> None:
        if self.stopping is None:
            self.stopping = sig
            self.signal_all(signal.SIGTERM)

    def on_hup(self, sig: int, frame: FrameType | None) -> None:
        self.signal_all(signal.SIGHUP)

    def reap(self) -> None:
        """Collect dead workers; start replacements while running."""
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.pids.clear()
                return
            if pid == 0:
                return
            started = self.pids.pop(pid, None)
            if started is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping is not None:
                continue
            quick = time.monotonic() - started < QUICK_DEATH_S
            self.quick_deaths = self.quick_deaths + 1 if quick else 0
            log.error("worker %d exited (%s)%s", pid, _describe(code), "" if quick else "; starting another")
            if self.quick_deaths >= MAX_QUICK_DEATHS:
                log.error("workers keep dying right after start; stopping the service")
                self.exit_code = code if code > 0 else 1
                self.on_stop(signal.SIGTERM, None)
                continue
            self.spawn()

    def run(self) -> int:
        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, self.on_stop),
            signal.SIGINT: signal.signal(signal.SIGINT, self.on_stop),
            signal.SIGHUP: signal.signal(signal.SIGHUP, self.on_hup),
        }
        try:
            for _ in range(self.count):
                self.spawn()
            while self.stopping is None:
                self.reap()
                time.sleep(0.2)
            deadline = time.monotonic() + STOP_GRACE_S
            while self.pids and time.monotonic() < deadline:
                self.reap()
                time.sleep(0.1)
            if self.pids:
                log.error("workers %s did not stop in %.0f s; killing them", sorted(self.pids), STOP_GRACE_S)
                self.signal_all(signal.SIGKILL)
                while self.pids:
                    self.reap()
                    time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code


def _describe(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _worker_main(run_worker: Callable[[], None]) -> int:
    """Run one worker; its exit code (a BastionError's code, rendered the CLI's way, on failure)."""
    os.environ[WORKER_ENV] = "1"
    code = 0
    try:
        run_worker()
    except BastionError as exc:
        from bastion.cli.render import render_error

        code = render_error(exc, as_json=False)
    except BaseException:  # noqa: BLE001 - a worker must exit, never unwind into the parent's frames
        log.exception("worker failed")
        code = internal_error().exit_code
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def supervise(count: int, run_worker: Callable[[], None]) -> int:
    """Fork ``count`` workers that each call ``run_worker``; supervise them until stopped.

    Returns the service's exit code: 0 after a requested stop, a worker's code when workers keep
    failing at start.
    """
    return _Supervisor(count, run_worker).run()
