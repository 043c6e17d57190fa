"""The egress guard refuses outbound connections before any packet is sent.

Each case runs in a child process (an audit hook cannot be removed) inside a fresh network
namespace (`unshare -n`), so even a broken guard could not reach any other host: the test tells a
refusal by the guard (EgressBlocked) apart from the namespace's "network unreachable".
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import socket, sys
    from bastion.errors import EgressBlocked
    from bastion.serve.egress import install_egress_guard
    install_egress_guard(sys.argv[2:])
    def attempt(fn):
        try:
            fn()
        except EgressBlocked:
            return "blocked"
        except OSError as exc:
            return f"oserror:{exc.errno}"
        return "ok"
    target = sys.argv[1]
    if target == "connect-public":
        print(attempt(lambda: socket.create_connection(("192.0.2.1", 443), timeout=1)))
    elif target == "connect-allowed":
        print(attempt(lambda: socket.create_connection(("192.0.2.7", 443), timeout=1)))
    elif target == "dns":
        print(attempt(lambda: socket.getaddrinfo("exfil.example.com", 443)))
    elif target == "udp":
        print(attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.1", 53))))
    elif target == "loopback":
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        print(attempt(lambda: socket.create_connection(srv.getsockname(), timeout=1)))
    """
)


def run_probe(*args: str) -> str:
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, "-c", PROBE, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_connection_to_a_non_loopback_address_is_refused() -> None:
    assert run_probe("connect-public") == "blocked"


def test_dns_lookup_of_an_outside_name_is_refused() -> None:
    assert run_probe("dns") == "blocked"


def test_udp_datagram_to_an_outside_address_is_refused() -> None:
    assert run_probe("udp") == "blocked"


def test_loopback_is_allowed() -> None:
    assert run_probe("loopback") == "ok"


def test_configured_upstream_is_allowed_to_try() -> None:
    # allowed by the guard, so the attempt reaches the (empty) namespace and fails there instead
    assert run_probe("connect-allowed", "192.0.2.7").startswith("oserror")
