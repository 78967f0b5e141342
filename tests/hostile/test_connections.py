"""Hostile connections on the HTTP port (issue #8): thousands of idle sockets, the connection
limit, and ``Expect: 100-continue`` without a body.

Every test talks to a real node process over loopback. Idle sockets are opened in a loop with a
deadline and closed in ``finally``; the test process raises its own descriptor limit to open them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import resource
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, running_node, wait_for

# The bound for a normal read while idle connections are held.
READ_BOUND_S = 1.0
READS_PER_CHECK = 15


@contextlib.contextmanager
def descriptor_limit(needed: int) -> Iterator[None]:
    """Raise this process's soft descriptor limit (children, the node, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        yield
        return
    assert hard == resource.RLIM_INFINITY or hard >= needed, (
        f"the hard descriptor limit {hard} is below the {needed} this test needs"
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(port: int, count: int, into: list[socket.socket], deadline_s: float = 60.0) -> None:
    """Open ``count`` more connections that never send a byte."""
    end = time.monotonic() + deadline_s
    for _ in range(count):
        assert time.monotonic() < end, f"opened only {len(into)} connections in {deadline_s}s"
        into.append(socket.create_connection(("127.0.0.1", port), timeout=10))


def is_open(sock: socket.socket) -> bool:
    """True while the server has not closed this (idle) connection."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return False
        raise
    finally:
        sock.setblocking(True)


def timed_reads(node: NodeProcess, token: str, count: int = READS_PER_CHECK) -> list[float]:
    """``count`` normal client reads (a fresh connection each, as a new client); seconds each."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        result = node.request(
            "GET",
            "/nacos/v1/ns/instance/list",
            {"serviceName": "idle-probe", "accessToken": token},
            timeout=10,
        )
        took.append(time.monotonic() - started)
        assert result.status == 200, result.text
    return took


def http_stats(node: NodeProcess) -> dict[str, Any]:
    return dict(node.request("GET", "/nacos/v1/ns/operator/metrics", timeout=10).json()["http"])


def holding(node: NodeProcess, count: int) -> dict[str, Any] | None:
    """The node's HTTP counters once it holds ``count`` connections, else None."""
    stats = http_stats(node)
    return stats if stats["openConnections"] >= count else None


def assert_reads_prompt(took: list[float], context: str) -> None:
    median = statistics.median(took)
    assert median < READ_BOUND_S, f"{context}: median read {median:.3f}s; all: {took}"
    assert max(took) < 5 * READ_BOUND_S, f"{context}: slowest read {max(took):.3f}s"


def test_thousands_of_idle_connections_are_held_and_normal_reads_answered(
    tmp_path: Path,
) -> None:
    # The old loop used select(): a descriptor >= 1024 killed the node at ~1,010 connections.
    idle: list[socket.socket] = []
    with descriptor_limit(5000 + 1024), running_node(tmp_path / "node") as node:
        token = node.token()
        try:
            for target in (1100, 5000):
                open_idle(node.port, target - len(idle), idle)
                stats = wait_for(
                    functools.partial(holding, node, target),
                    30,
                    interval_s=0.2,
                    message=f"the node to hold {target} connections",
                )
                assert stats["shedIdle"] == 0, stats
                assert_reads_prompt(timed_reads(node, token), f"{target} idle connections")
                assert node.proc is not None and node.proc.poll() is None, node.log()
            # Held, not merely accepted: none of them was closed meanwhile.
            assert all(is_open(s) for s in idle[:: len(idle) // 100])
            assert http_stats(node)["openConnections"] >= 5000
        finally:
            for sock in idle:
                sock.close()


def test_at_the_connection_limit_the_longest_idle_are_shed(tmp_path: Path) -> None:
    # waitress stopped accepting at its limit: a normal client then waited in the kernel backlog.
    limit = 200
    old: list[socket.socket] = []
    new: list[socket.socket] = []
    env = {"NAMING_HTTP_CONNECTION_LIMIT": str(limit)}
    with descriptor_limit(2048), running_node(tmp_path / "node", env=env) as node:
        token = node.token()
        try:
            # A little under the limit, so the probe's own connection sheds nothing yet.
            open_idle(node.port, limit - 10, old)
            wait_for(
                lambda: http_stats(node)["openConnections"] >= limit - 10,
                15,
                message="the first connections held",
            )
            time.sleep(0.2)  # the next ones are strictly younger
            open_idle(node.port, limit, new)
            assert_reads_prompt(timed_reads(node, token), "at the connection limit")

            wait_for(
                lambda: not any(is_open(s) for s in old),
                15,
                message="the oldest idle connections closed",
            )
            assert all(is_open(s) for s in new[-limit // 2 :]), "a young connection was shed"
            stats = http_stats(node)
            assert stats["connectionLimit"] == limit
            assert stats["shedIdle"] >= len(old), stats
            # Shedding goes a batch (a tenth of the limit) ahead; never far past the limit.
            assert stats["openConnections"] <= limit + limit // 10, stats
            assert node.proc is not None and node.proc.poll() is None
        finally:
            for sock in old + new:
                sock.close()


def read_response(sock: socket.socket, deadline_s: float = 5.0) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one response; fails if none arrives within ``deadline_s``."""
    sock.settimeout(deadline_s)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no response within {deadline_s}s; got {data!r}") from None
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 100:
        return status, head, body
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return status, head, body


def send(node: NodeProcess, raw: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    sock.sendall(raw)
    return sock


@pytest.mark.parametrize(
    "request_head",
    [
        b"POST /nacos/v1/auth/login?username=nacos&password={pw} HTTP/1.1\r\n"
        b"Host: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        b"GET /nacos/v1/ns/operator/metrics HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    ],
    ids=["content-length-0", "no-content-length"],
)
def test_expect_100_continue_without_a_body_is_answered(
    node: NodeProcess, request_head: bytes
) -> None:
    # waitress sent "100 Continue" and then waited for a body that was never announced.
    raw = request_head.replace(b"{pw}", node.admin_password.encode())
    with contextlib.closing(send(node, raw)) as sock:
        status, head, body = read_response(sock)
        assert status == 200, head
        assert b"100 Continue" not in head
        assert body.startswith(b"{"), body


def test_expect_100_continue_with_a_body_still_gets_continue(node: NodeProcess) -> None:
    body = f"username=nacos&password={node.admin_password}".encode()
    head = (
        b"POST /nacos/v1/auth/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with contextlib.closing(send(node, head)) as sock:
        status, _, _ = read_response(sock)
        assert status == 100
        sock.sendall(body)
        status, head_back, answer = read_response(sock)
        assert status == 200, head_back
        assert b"accessToken" in answer


def test_expect_100_continue_with_a_body_too_large_is_refused_at_once(node: NodeProcess) -> None:
    head = (
        b"POST /nacos/v1/auth/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 9000000\r\n\r\n"
    )
    with contextlib.closing(send(node, head)) as sock:
        status, head_back, _ = read_response(sock)
        assert status == 413, head_back


def test_a_kept_alive_client_keeps_working_after_100_continue(node: NodeProcess) -> None:
    # The connection stays usable: the next request on it is served normally.
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
    try:
        for _ in range(2):
            conn.request(
                "GET",
                "/nacos/v1/ns/operator/metrics",
                headers={"Expect": "100-continue"},
            )
            response = conn.getresponse()
            assert response.status == 200
            response.read()
    finally:
        conn.close()
