"""Process-wide egress guard: nothing leaves the host except to loopback and configured upstreams.

A ``sys.addaudithook`` sees every ``socket.connect`` (and ``connect_ex``), every datagram sent to an
address (``socket.sendto``, ``socket.sendmsg`` with an address) and every name or address lookup
(``getaddrinfo``, ``gethostbyname[_ex]``, ``gethostbyaddr``, ``getnameinfo``) made through Python's
socket module, whatever library makes it, and refuses the ones that are not allowed before any packet
is sent. Raw and packet sockets (``AF_PACKET``, ``SOCK_RAW``) are refused at creation: they address
hosts beneath these events. That is why the gateway runs on the standard asyncio event loop: uvloop connects
through libuv, beneath Python's audit events, and would slip past this guard. Audit hooks cannot be
removed, so the guard is installed once per process and only its allow-list changes.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Iterable
from typing import Any

from bastion.errors import EgressBlocked

log = logging.getLogger("bastion.egress")

_installed: EgressGuard | None = None
_ADDRESS_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_LOOKUP_EVENTS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)
_AF_PACKET = getattr(socket, "AF_PACKET", -1)


class EgressGuard:
    """Allow loopback and the given hosts; refuse every other outbound address."""

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        self.hosts: set[str] = {"localhost", "localhost.localdomain", "ip6-localhost"}
        self.addresses: set[str] = set()
        self.allow(hosts)

    def allow(self, hosts: Iterable[str]) -> None:
        """Add host names or addresses (names are resolved now, while lookups are still allowed)."""
        for host in hosts:
            host = host.strip().strip("[]").lower()
            if not host:
                continue
            self.hosts.add(host)
            try:
                ipaddress.ip_address(host)
                self.addresses.add(host)
            except ValueError:
                try:
                    for info in socket.getaddrinfo(host, None):
                        self.addresses.add(str(info[4][0]))
                except OSError:
                    log.warning("egress guard: cannot resolve allowed host %s", host)

    def permits_host(self, host: Any) -> bool:
        """True for loopback, unspecified (binding) and allowed hosts."""
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode("idna", "replace")
        host = str(host).strip("[]").lower()
        if host in ("", "0.0.0.0", "::") or host in self.hosts or host in self.addresses:  # noqa: S104
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def permits_address(self, address: Any) -> bool:
        """True for a socket address the guard lets through (an AF_UNIX path stays on this host)."""
        if isinstance(address, str | bytes | bytearray | None):
            return True  # AF_UNIX path (or no address: the socket's connected peer, already checked)
        if isinstance(address, tuple) and address:
            return self.permits_host(address[0])
        return False  # anything else (a list, an object with a custom __getitem__) is not understood

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _ADDRESS_EVENTS:
            # connect(self, address); sendto(self, address); sendmsg(self, address) where address is
            # None when the socket's connected peer is used.
            if len(args) >= 2 and not self.permits_address(args[-1]):
                self._refuse(event, args[-1])
        elif event in _LOOKUP_EVENTS:
            # a lookup can itself leak data to a DNS server (the name, or a reverse PTR query)
            target = args[0] if args else None
            if isinstance(target, tuple):  # getnameinfo((host, port), flags)
                target = target[0] if target else None
            if target is not None and not self.permits_host(target):
                self._refuse(event, target)
        elif event == "socket.__new__" and len(args) >= 3:
            # (self, family, type, proto): packet and raw sockets bypass addressing by host name/IP
            family, kind = args[1], args[2]
            if family == _AF_PACKET or (isinstance(kind, int) and kind & 0xF == socket.SOCK_RAW):
                self._refuse(event, f"raw socket (family {family}, type {kind})")

    def _refuse(self, event: str, target: Any) -> None:
        log.warning("egress guard refused %s to %r", event, target)
        raise EgressBlocked(
            f"outbound network access to {target!r} refused by the egress guard",
            hint="Bastion only talks to loopback and configured upstreams; add the host to egress.allow"
            " if this connection is intended.",
        )


def install_egress_guard(hosts: Iterable[str] = ()) -> EgressGuard:
    """Install the process-wide guard (once), allowing ``hosts`` besides loopback; returns it."""
    global _installed
    if _installed is None:
        _installed = EgressGuard(hosts)
        sys.addaudithook(_installed._hook)
    else:
        _installed.allow(hosts)
    return _installed
