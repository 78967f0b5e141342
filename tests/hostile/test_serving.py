"""The serving stack of issue #11: slow requests never hold the event loop, idle connections
cost no thread, and SIGTERM answers the requests in progress before the process exits.

The hot routes (beat, list, register) are served on the event-loop thread; a request that
reaches a blocking step (a Raft commit, a password hash, a forward) moves to a worker. These
tests make requests slow for real (a quorum that is gone, password hashing) and check that the
others are answered meanwhile. The bounds are generous correctness bounds for a loaded 2-core
box, not performance figures.
"""

from __future__ import annotations

import functools
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import (
    NodeProcess,
    distro_status,
    running_cluster,
    running_node,
    wait_for,
)
from tests.hostile.test_connections import (
    descriptor_limit,
    holding,
    http_stats,
    is_open,
    open_idle,
    read_response,
)

# A request that takes no blocking step must be answered this fast while slow ones are waiting.
PROMPT_S = 1.0


def thread_count(node: NodeProcess) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def timed(call: Callable[[], Any], count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.monotonic()
        call()
        took.append(time.monotonic() - started)
    return took


def register_and_list(node: NodeProcess, token: str) -> Callable[[], None]:
    def call() -> None:
        reg = node.request(
            "POST",
            "/nacos/v1/ns/instance",
            {"serviceName": "fast", "ip": "10.0.0.1", "port": 80, "accessToken": token},
        )
        assert reg.status == 200, reg.text
        listed = node.request(
            "GET", "/nacos/v1/ns/instance/list", {"serviceName": "fast", "accessToken": token}
        )
        assert listed.status == 200, listed.text

    return call


@pytest.mark.slow
def test_waiting_raft_commits_do_not_stall_the_hot_routes(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as nodes:
        survivor, *others = nodes
        token = survivor.token()
        for node in others:
            node.kill9()  # no quorum: every persistent write now waits for a leader, then 503
        # Ephemeral writes stay local once the survivor has seen the others go.
        wait_for(
            lambda: distro_status(survivor)["healthyMembers"] == [survivor.address],
            30,
            message="the survivor to own every service",
        )

        slow_took: list[float] = []
        slow_status: list[int] = []
        lock = threading.Lock()

        def persistent_write(i: int) -> None:
            started = time.monotonic()
            answer = survivor.request(
                "POST",
                "/nacos/v1/ns/instance",
                {
                    "serviceName": f"slow-{i}",
                    "ip": "10.1.0.1",
                    "port": 80,
                    "ephemeral": "false",
                    "accessToken": token,
                },
                timeout=30,
            )
            with lock:
                slow_took.append(time.monotonic() - started)
                slow_status.append(answer.status)

        before = http_stats(survivor)
        with ThreadPoolExecutor(12) as pool:
            waiting = [pool.submit(persistent_write, i) for i in range(12)]
            time.sleep(0.3)  # they are all waiting for a leader now
            fast = timed(register_and_list(survivor, token), 10)
            for future in waiting:
                future.result()
        after = http_stats(survivor)

        # The slow ones really were slow and really were refused (nothing half-written).
        assert set(slow_status) == {503}, slow_status
        assert min(slow_took) > 1.0, slow_took
        assert statistics.median(fast) < PROMPT_S, fast
        assert max(fast) < 2 * PROMPT_S, fast
        # Each persistent write started on the loop, reached the Raft commit and moved to a
        # worker; the ephemeral writes and lists never left the loop.
        assert after["offloaded"] - before["offloaded"] >= 12, (before, after)
        assert after["servedOnLoop"] - before["servedOnLoop"] >= 20, (before, after)


def test_logins_hashing_do_not_stall_lists(node: NodeProcess) -> None:
    token = node.token()
    call = register_and_list(node, token)
    call()

    def login() -> int:
        return node.request(
            "POST",
            "/nacos/v1/auth/login",
            {"username": "nacos", "password": node.admin_password},
            timeout=30,
        ).status

    with ThreadPoolExecutor(6) as pool:
        logins = [pool.submit(login) for _ in range(6)]
        fast = timed(call, 10)
        statuses = [f.result() for f in logins]
    # Hashing is bounded (one worker, a short queue): the rest are refused at once with 503.
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    assert statistics.median(fast) < PROMPT_S, fast


def test_5000_idle_connections_cost_no_thread(tmp_path: Path) -> None:
    idle: list[socket.socket] = []
    with descriptor_limit(5000 + 1024), running_node(tmp_path / "node") as node:
        try:
            node.token()
            threads_before = thread_count(node)
            open_idle(node.port, 5000, idle)
            wait_for(
                functools.partial(holding, node, 5000),
                30,
                interval_s=0.2,
                message="the node to hold 5000 connections",
            )
            threads_after = thread_count(node)
            # The worker pool may have started a few of its threads for the probes meanwhile;
            # a thread per connection would be thousands.
            assert threads_after - threads_before <= 4, (threads_before, threads_after)
            stats = http_stats(node)
            assert threads_after <= stats["threads"] + 40, (threads_after, stats)
            assert all(is_open(s) for s in idle[::50])
        finally:
            for sock in idle:
                sock.close()


def test_sigterm_answers_a_request_in_progress_then_exits(tmp_path: Path) -> None:
    # A login under load can take longer than the default 2 s drain.
    env = {"NAMING_HTTP_DRAIN_S": "20"}
    with descriptor_limit(4096), running_node(tmp_path / "node", env=env) as node:
        idle: list[socket.socket] = []
        try:
            open_idle(node.port, 500, idle)
            body = f"username=nacos&password={node.admin_password}".encode()
            sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            idle.append(sock)
            # A login hashes a password on a worker: still in progress when SIGTERM arrives.
            sock.sendall(
                b"POST /nacos/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            wait_for(
                lambda: http_stats(node)["busyConnections"] >= 2,  # the login and this probe
                10,
                interval_s=0.01,
                message="the login in progress",
            )
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
            status, head, answer = read_response(sock, deadline_s=10)
            assert status == 200 and b"accessToken" in answer, (head, answer)
            assert b"Connection: close" in head, head
            assert node.proc.wait(30) == 0, node.log()
            assert "node stopped" in node.log()
            assert not any(is_open(s) for s in idle[:-1:25])
        finally:
            for sock in idle:
                sock.close()
