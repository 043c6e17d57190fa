"""Finding 16: no limit on request header size: 20 never-finished 10 MB headers grew the gateway's RSS by
267 MB (httptools holds an unfinished header in memory however long it grows).

A real gateway process, raw sockets, and the server's resident memory read from /proc before and after.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.adversarial.net_gateway import Served, rss_kib, start
from tests.serve.conftest import stop

CONNECTIONS = 20
HEADER_BYTES = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("headers-gw")
    served = start(home, server_extra="header_timeout_s = 2")
    try:
        yield served
    finally:
        stop(served.proc)


def connect(served: Served) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served.port), timeout=30)


def answer(sock: socket.socket) -> bytes:
    """Whatever the server sends before it closes (or 30 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def endless_header(served: Served, replies: list[bytes]) -> None:
    """Start a request, then send a 10 MB header value that never ends (no CRLF), as the attack did."""
    sock = connect(served)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Filler: ")
        piece = b"a" * 65536
        for _ in range(HEADER_BYTES // len(piece)):
            sock.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway refused and hung up: exactly what should happen
    replies.append(answer(sock))
    sock.close()


def test_twenty_endless_10_mb_headers_do_not_grow_the_gateway(gateway: Served) -> None:
    before = rss_kib(gateway.proc.pid)
    replies: list[bytes] = []
    threads = [threading.Thread(target=endless_header, args=(gateway, replies)) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    grown_mib = (rss_kib(gateway.proc.pid) - before) / 1024
    print(f"RSS growth after {CONNECTIONS} endless 10 MB headers: {grown_mib:.1f} MiB")
    assert len(replies) == CONNECTIONS
    assert all(r.startswith(b"HTTP/1.1 431 ") for r in replies), replies[:2]
    assert b'"code":"headers_too_large"' in replies[0]
    # 20 connections x (64 KiB bound + one 256 KiB read) is ~6 MiB; 267 MB grew before the fix.
    assert grown_mib < 48, f"the gateway grew by {grown_mib:.0f} MiB"
    assert gateway.proc.poll() is None


def test_too_many_header_fields_get_431(gateway: Served) -> None:
    sock = connect(gateway)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(150))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    reply = answer(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]


def test_a_head_sent_too_slowly_gets_408(gateway: Served) -> None:
    sock = connect(gateway)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and then nothing (slow loris)
    reply = answer(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]


def test_a_normal_request_with_a_large_body_in_one_read_is_not_mistaken_for_a_large_head(gateway: Served) -> None:
    """A body that arrives in the same read as its head (and later keep-alive requests) still works."""
    body = b'{"model": "up", "messages": [{"role": "user", "content": "' + b"x" * 200_000 + b'"}]}'
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock = connect(gateway)
    sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 401 "), first[:200]  # no key: refused by the app, not the head guard
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    rest = answer(sock)
    sock.close()
    assert b"HTTP/1.1 503 " in rest and b" 431 " not in first + rest  # /healthz: the only upstream is down
