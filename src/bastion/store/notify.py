"""LISTEN/NOTIFY on PostgreSQL: a change written anywhere reaches every gateway at once, with no query
per request.

The change counters' trigger functions (:mod:`bastion.store.changes`) also ``pg_notify`` on
:data:`CHANNEL` with ``schema.table`` as payload. Each gateway process runs one :class:`Listener`: a
dedicated connection (not from the pool: a pooled connection is handed to other threads, and LISTEN
belongs to a session) that LISTENs in a background thread and counts the notifications per table.
While it is connected, a :class:`~bastion.store.changes.ChangeWatch` answers "unchanged" from memory
until a notification names one of its tables; then it reads the counters, as it does on every request
when nothing listens. So a notification never carries state: it only says "look at the counters",
which triggers inside the database keep. Someone who can NOTIFY on the channel (any role that can
connect) can make a gateway read the counters, never make it believe a revoked key is valid.

Fail safe, in this order of defence:

- the listener's connection is lost (server restart, ``pg_terminate_backend``): every check reads the
  counters again (today's per-request poll) until the listener is back, reconnecting with backoff;
- a notification sent while it was reconnecting is covered: each watch reads the counters once after
  the listener is back (the reconnection starts a new epoch);
- a notification lost some other way (a silently dead TCP connection, a trigger function replaced
  without its NOTIFY): each watch still reads the counters at least every :data:`RECHECK_S`, so the
  staleness is bounded by one second, not unbounded.

Reloads travel the same way: ``POST /admin/reload`` bumps the ``_reload`` counter and notifies
:data:`RELOAD_CHANNEL`; every other gateway sharing the database re-reads its policy file (the SIGHUP
path) when that counter moved, and after a reconnection if it moved meanwhile. A forged reload
notification moves no counter and reloads nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bastion.store.target import PostgresTarget, redact

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("bastion.store.notify")

#: the channel the change counters' trigger functions notify (payload: ``schema.table``)
CHANNEL = "bastion_changes"
#: the channel ``POST /admin/reload`` notifies (payload: the schema whose gateways should reload)
RELOAD_CHANNEL = "bastion_reload"
#: the change counter a reload bumps (a name no table has: tables are plain identifiers)
RELOAD_COUNTER = "_reload"
#: even while listening, a watch reads its counters at least this often (bounds a lost notification)
RECHECK_S = 1.0
#: how long the listener waits for a notification before looking at its stop flag and heartbeat
WAIT_S = 0.25
#: a round trip on the listening connection this often, so a dead server is noticed while idle
HEARTBEAT_S = 5.0
#: reconnection backoff: first delay, and the longest
BACKOFF_S = (0.1, 5.0)
#: libpq's TCP keepalives: a peer that vanished without a FIN is noticed in about a minute
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

Mark = tuple[int, ...]
_SERIALS = itertools.count(1)


class Listener:
    """One LISTEN connection to the database at ``target``, in a background thread, for this process.

    Each of ``on_reload`` is called (in the listener's thread) when another process announced a reload.
    ``recheck_s``: how stale a watch may let its counters get while listening (see :data:`RECHECK_S`).
    Gateways get the process's one listener from :func:`listen`; tests may make more, and
    :meth:`start` and :meth:`stop` them.
    """

    def __init__(self, target: PostgresTarget, recheck_s: float = RECHECK_S) -> None:
        self.target = target
        self.recheck_s = recheck_s
        self._serial = next(_SERIALS)
        self.on_reload: list[Callable[[], None]] = []
        #: the gateways of this process using it (see :func:`listen`)
        self.users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: the connection number while LISTEN is in force, None while not (read without a lock: an int)
        self._epoch: int | None = None
        self._epochs = 0
        self._schema = "public"
        #: notifications received per watched table, and for "every table" (a payload naming no table)
        self._bumps: dict[str, int] = {}
        self._any = 0
        #: the reload counter as last acted on; the lock orders an announcement against the listener
        self._reload_lock = threading.Lock()
        self._reload_seen: int | None = None
        self.connected = threading.Event()
        #: how many times the connection was (re)established (for tests and logs)
        self.connections = 0

    @property
    def application_name(self) -> str:
        """How the listening session shows in ``pg_stat_activity`` (with this process's id)."""
        return f"bastion-listen {os.getpid()}-{self._serial}"

    # -- what watches ask -------------------------------------------------------------------------

    def mark(self, tables: Sequence[str]) -> Mark | None:
        """A value that changes whenever a notification may concern ``tables`` or the connection was
        re-established; None while not listening (then every check must read the counters)."""
        epoch = self._epoch
        if epoch is None:
            return None
        # Registers the tables watched: only their notifications are counted (a forger naming a new
        # table in every payload would otherwise grow this dictionary without bound).
        return (epoch, self._any, *(self._bumps.setdefault(t, 0) for t in tables))

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bastion-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (returns within about :data:`WAIT_S`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def release(self, on_reload: Callable[[], None] | None = None) -> None:
        """Give back what :func:`listen` handed out; the last user stops it."""
        with _LOCK:
            if on_reload in self.on_reload:
                self.on_reload.remove(on_reload)
            self.users -= 1
            if self.users > 0:
                return
            if _LISTENERS.get(self.target.url) is self:
                del _LISTENERS[self.target.url]
        self.stop()

    def _run(self) -> None:
        import psycopg
        from psycopg import conninfo

        delay = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                info = conninfo.make_conninfo(
                    self.target.url, application_name=self.application_name, connect_timeout=10, **_KEEPALIVES
                )
                conn = psycopg.connect(info, autocommit=True)
            except psycopg.Error as exc:
                log.warning("cannot LISTEN on %s (%s); checking the store on every request, retrying in"
                            " %.1f s", redact(self.target.url), _first_line(exc), delay)
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_S[1])
                continue
            delay = BACKOFF_S[0]
            try:
                with conn:
                    self._listen(conn)
            except psycopg.Error as exc:
                log.warning("LISTEN connection to %s lost (%s); checking the store on every request until"
                            " it is back", redact(self.target.url), _first_line(exc))
            finally:
                self._epoch = None
                self.connected.clear()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"LISTEN {CHANNEL}")
        conn.execute(f"LISTEN {RELOAD_CHANNEL}")
        row = conn.execute("SELECT current_schema()").fetchone()
        self._schema = str(row[0]) if row and row[0] else "public"
        # From here every commit is notified to us: a new epoch makes every watch read its counters
        # once more, which covers what was committed while we were not listening.
        self._epochs += 1
        self._epoch = self._epochs
        self.connections += 1
        self.connected.set()
        log.info("listening for changes on %s (schema %s)", redact(self.target.url), self._schema)
        self._check_reload(conn)
        beat = time.monotonic()
        while not self._stop.is_set():
            # stop_after=1: back after the first packet's notifications (every one of them is yielded),
            # since the connection cannot run a query while the generator holds it.
            reload = False
            for note in conn.notifies(timeout=WAIT_S, stop_after=1):
                reload = self._heard(note.channel, note.payload) or reload
            if reload:
                self._check_reload(conn)
            if time.monotonic() - beat > HEARTBEAT_S:
                conn.execute("SELECT 1")
                beat = time.monotonic()

    def _heard(self, channel: str, payload: str) -> bool:
        """Count a notification; True when it asks for a look at the reload counter."""
        if channel == CHANNEL:
            schema, dot, table = payload.partition(".")
            if not dot:
                self._any += 1  # no table named: count it against every table (only costs a counter read)
            elif schema == self._schema and table in self._bumps:
                self._bumps[table] += 1
            return False
        return channel == RELOAD_CHANNEL and payload == self._schema

    # -- reloads ------------------------------------------------------------------------------------

    def _check_reload(self, conn: psycopg.Connection[Any]) -> None:
        """Reload when the reload counter moved past what this process last acted on (not at start)."""
        with self._reload_lock:
            generation, seen = _reload_generation(conn), self._reload_seen
            self._reload_seen = generation if seen is None else max(seen, generation)
            if seen is None or generation <= seen:  # at start, our own announcement, or nothing new
                return
        # moved since we last looked, by another process: its announcement, or one missed while away
        log.info("a reload was announced by another gateway; reloading")
        for reload in list(self.on_reload):
            try:
                reload()
            except Exception:  # a gateway that cannot take it (shutting down) must not stop the listening
                log.exception("a reload callback failed")

    def announce_reload(self) -> bool:
        """Tell every gateway sharing this database to reload (bump the counter, notify). False, with a
        log line, when the database cannot be reached (this process still reloads on its own)."""
        from bastion.errors import StoreUnavailable
        from bastion.store.postgres import PgConnection

        try:
            conn = PgConnection(self.target)
        except StoreUnavailable as exc:
            log.error("reload not announced to the other gateways: %s", exc.message)
            return False
        try:
            # Under the lock, so that our own notification, when the listener reads it, finds the
            # counter already acted on: the announcing process does not reload twice.
            with self._reload_lock:
                with conn.transaction():
                    row = conn.execute(
                        "INSERT INTO change_counters (name, generation) VALUES (?, 1) ON CONFLICT (name)"
                        " DO UPDATE SET generation = change_counters.generation + 1 RETURNING generation",
                        (RELOAD_COUNTER,),
                    ).fetchone()
                    conn.execute("SELECT pg_notify(?, current_schema())", (RELOAD_CHANNEL,))
                self._reload_seen = max(self._reload_seen or 0, int(row[0]))
        except StoreUnavailable as exc:
            log.error("reload not announced to the other gateways: %s", exc.message)
            return False
        finally:
            conn.close()
        return True


def _reload_generation(conn: psycopg.Connection[Any]) -> int:
    import psycopg.errors

    try:
        row = conn.execute("SELECT generation FROM change_counters WHERE name = %s", (RELOAD_COUNTER,))
        found = row.fetchone()
    except psycopg.errors.UndefinedTable:  # no store has created its counters yet: nothing announced
        return 0
    return int(found[0]) if found else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- this process's listeners, by database URL (as the pools are: bastion.store.postgres.POOLS) -------

_LISTENERS: dict[str, Listener] = {}
_LOCK = threading.Lock()


def listen(
    target: PostgresTarget, on_reload: Callable[[], None] | None = None, recheck_s: float = RECHECK_S
) -> Listener:
    """This process's listener for ``target``, started on first use (a gateway does, at start-up).

    Gateways of one process share it (each adds its ``on_reload``); each gives it back with
    :meth:`Listener.release`. Until one is started, and in every other process (the CLI), watches poll.
    ``recheck_s`` applies when this call starts it.
    """
    with _LOCK:
        listener = _LISTENERS.get(target.url)
        if listener is None:
            listener = _LISTENERS[target.url] = Listener(target, recheck_s)
            listener.start()
        listener.users += 1
        if on_reload is not None:
            listener.on_reload.append(on_reload)
        return listener


def listener_for(url: str) -> Listener | None:
    """This process's listener for the database at ``url``, if one was started."""
    return _LISTENERS.get(url)
