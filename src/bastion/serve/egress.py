"""Process-wide egress guard: nothing leaves the host except to loopback and configured upstreams.

A ``sys.addaudithook`` sees every ``socket.connect``, ``socket.sendto`` and name lookup made through
Python's socket module, whatever library makes it, and refuses the ones that are not allowed before
any packet is sent. That is why the gateway runs on the standard asyncio event loop: uvloop connects
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

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect" or event == "socket.sendto":
            address = args[1] if event == "socket.connect" else args[-1]
            if isinstance(address, tuple) and address and not self.permits_host(address[0]):
                self._refuse(event, address)
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            # a name lookup can itself leak data to a DNS server, so it is refused too
            if args and not self.permits_host(args[0]):
                self._refuse(event, args[0])

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
