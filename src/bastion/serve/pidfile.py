"""The gateway's pid file, locked for as long as the gateway runs.

``serve.pid`` tells ``bastion policy reload`` which process to send SIGHUP. A pid alone is not enough:
after a ``kill -9`` the file stays behind and the kernel may give its pid to an unrelated process. So
the running gateway holds an exclusive ``flock`` on the file for its whole life (the kernel drops it
when the process dies, however it dies), and a reader believes the pid only while the lock is held by
that very process. A second gateway on the same ``BASTION_HOME`` cannot take the lock, so it stops
before it touches the file (it used to overwrite it, then delete it on exit).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from bastion.errors import Busy, NotFound

_GATEWAY_HINT = "Start it with 'bastion serve' (same BASTION_HOME), or send SIGHUP to its process yourself."


class PidFile:
    """An exclusively locked pid file; :meth:`release` (or process death) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> PidFile:
        """Lock ``path`` and write this process's pid into it; Busy if another gateway holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise Busy(
                f"a gateway is already running from this BASTION_HOME (pid {other}, holds {path})",
                hint="Stop it first ('kill -TERM <pid>'), or give this gateway its own BASTION_HOME.",
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        return cls(path, fd)

    def release(self) -> None:
        """Remove the file and drop the lock (removed first, so nobody reads a pid we no longer vouch for)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def running_gateway(path: Path) -> int:
    """The pid of the live gateway that holds ``path``'s lock; NotFound for a missing or stale file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no running gateway found ({path} does not exist)", hint=_GATEWAY_HINT) from None
    try:
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a gateway is alive; check below that it is the one the file names
        else:
            raise NotFound(
                f"no running gateway found: {path} names pid {text or '?'} but no gateway holds it"
                " (left behind by a gateway that was killed); nothing was signalled",
                hint=_GATEWAY_HINT,
            )
        stat = os.fstat(fd)
    finally:
        os.close(fd)
    if not text.isdigit():
        raise NotFound(f"{path} does not hold a process id ({text[:20]!r})", hint=_GATEWAY_HINT)
    pid = int(text)
    holders = _flock_holders(stat.st_dev, stat.st_ino)
    if holders is not None and pid not in holders:
        raise NotFound(
            f"{path} names pid {pid}, but its lock is held by {sorted(holders)}; nothing was signalled",
            hint="The file was edited or replaced; restart the gateway to rewrite it.",
        )
    return pid


def _flock_holders(dev: int, ino: int) -> set[int] | None:
    """Pids holding a FLOCK on the file (dev, ino), from /proc/locks; None where /proc is not there."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    holders = set()
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (blocked waiters are marked "->")
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == wanted and parts[4].isdigit():
            holders.add(int(parts[4]))
    return holders
