"""Hostile clients on the raft port (pysyncobj's TCP server) of a real standalone node (issue #8).

A standalone node runs pysyncobj on port - 1000 too; its persistent writes (``ephemeral=false``
registrations) are committed by the same tick thread that serves that port, so a stalled port
shows up as slow or refused persistent writes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lib.limits import raise_fd_limit
from testkit.harness import NodeProcess, wait_for

WRITE_BOUND_S = 1.0  # the bound for a normal client while the port is attacked
GiB_PREFIX = struct.pack("i", 0x7FFFFFFF)


@contextlib.contextmanager
def _node(tmp_path: Path, nofile: str) -> Iterator[NodeProcess]:
    """A node started under ``prlimit --nofile=<soft>:<hard>`` (exec, same PID)."""
    node = NodeProcess(tmp_path / "node", launcher=("prlimit", f"--nofile={nofile}"))
    node.start()
    try:
        _timed_persistent_write(node, 0)  # log in and create the service before timing anything
        yield node
    finally:
        try:
            node.stop()
        finally:
            node.kill9()


def _raft_port(node: NodeProcess) -> int:
    return node.port - 1000


def _transport(node: NodeProcess) -> dict[str, int]:
    metrics = node.request("GET", "/nacos/v1/ns/operator/metrics", timeout=5).json()
    return dict(metrics["raftTransport"])


def _timed_persistent_write(node: NodeProcess, n: int) -> float:
    started = time.monotonic()
    result = node.api(
        "POST",
        "/instance",
        {
            "serviceName": "raft-port-probe",
            "ip": "127.0.0.1",
            "port": 20000 + n,
            "ephemeral": "false",
        },
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert result.status == 200, result.text
    return elapsed


def _handshake(node: NodeProcess) -> bool:
    """pysyncobj's first step, as a peer does it: send our session key, get the node's back.

    Proves the raft port is bound, accepts, and its tick thread answers.
    """
    from pysyncobj import pickle
    from pysyncobj.encryptor import getEncryptor

    password = (node.data_dir / "raft.secret").read_text().strip()
    fernet = getEncryptor(password)
    ours = os.urandom(32)
    data = fernet.encrypt_at_time(zlib.compress(pickle.dumps(ours), 3), 1)
    with socket.create_connection(("127.0.0.1", _raft_port(node)), timeout=5) as sock:
        sock.sendall(struct.pack("i", len(data)) + data)
        header = _recv_exact(sock, 4)
        (length,) = struct.unpack("i", header)
        reply = pickle.loads(zlib.decompress(fernet.decrypt(_recv_exact(sock, length))))
    # The node answers with its own session key, tagged with ours (pysyncobj's framing).
    return bool(reply[0] == ours and isinstance(reply[1], bytes) and len(reply[1]) == 32)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the node")
        data += chunk
    return data


def _closed_by_peer(sock: socket.socket, deadline_s: float) -> float | None:
    """Seconds until the node closes ``sock`` (EOF or reset), or None within the deadline."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - started < deadline_s:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_2_gib_length_prefix_is_cut_off_and_persistent_writes_stay_fast(tmp_path: Path):
    with _node(tmp_path, "1024:1024") as node:
        sent = 0
        outcome: dict[str, Any] = {}

        def attack() -> None:
            nonlocal sent
            junk = os.urandom(64 * 1024)
            try:
                with socket.create_connection(("127.0.0.1", _raft_port(node)), timeout=10) as s:
                    s.sendall(GiB_PREFIX)
                    while sent < 48 * 1024 * 1024:
                        s.sendall(junk)
                        sent += len(junk)
                outcome["result"] = "all sent"
            except OSError as exc:
                outcome["result"] = f"cut off: {exc!r}"

        attacker = threading.Thread(target=attack, name="raft-length-attack", daemon=True)
        attacker.start()
        latencies: list[float] = []
        end = time.monotonic() + 30
        while (attacker.is_alive() or len(latencies) < 10) and time.monotonic() < end:
            latencies.append(_timed_persistent_write(node, len(latencies)))
        attacker.join(30)
        assert not attacker.is_alive()
        assert outcome["result"].startswith("cut off"), (outcome, sent)
        assert sent < 16 * 1024 * 1024  # refused at the prefix, not after buffering 48 MiB
        assert max(latencies) < WRITE_BOUND_S, latencies
        stats = wait_for(lambda: (s := _transport(node))["oversized"] >= 1 and s, 5)
        assert stats["unauthenticated"] == 0
        assert "raft port dropped connections (oversized: 1)" in node.log()
        assert _handshake(node)


def test_idle_and_garbage_connections_are_dropped_counted_and_logged(tmp_path: Path):
    with _node(tmp_path, "1024:1024") as node:
        idle = socket.create_connection(("127.0.0.1", _raft_port(node)), timeout=5)
        garbage = socket.create_connection(("127.0.0.1", _raft_port(node)), timeout=5)
        with idle, garbage:
            garbage.sendall(struct.pack("i", 100) + b"x" * 100)
            assert _closed_by_peer(garbage, 5) is not None
            wait_for(lambda: _transport(node)["unauthenticated"] == 1, 5, message="one held")
            closed_after = _closed_by_peer(idle, 20)
            # Not at once (a peer needs a moment to answer the handshake), but within seconds.
            assert closed_after is not None and 2.0 < closed_after < 15.0, closed_after
        stats = _transport(node)
        assert stats["garbage"] == 1 and stats["authTimeouts"] == 1, stats
        assert stats["unauthenticated"] == 0 and stats["accepted"] == 2, stats
        # One line per 10 s at most: the garbage one at once, the timeout in the next line.
        wait_for(lambda: "authTimeouts: 1" in node.log(), 15, message="the timeout logged")
        assert "raft port dropped connections (garbage: 1)" in node.log()
        assert _handshake(node)


def _flood(node: NodeProcess, count: int, held: list[socket.socket], errors: list[str]) -> None:
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", _raft_port(node)))
        except OSError as exc:
            sock.close()
            errors.append(repr(exc))
            continue
        held.append(sock)


@pytest.mark.slow
def test_5000_idle_connections_at_a_1024_soft_limit_are_shed_and_writes_stay_fast(
    tmp_path: Path,
):
    raise_fd_limit()  # this test process opens thousands of sockets too
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 12000:
        pytest.fail(f"this test needs a hard descriptor limit of 12000 or more, not {hard}")
    # The usual default: soft 1024 (the node raises it to the hard limit), hard as the box has.
    limit = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    with _node(tmp_path, f"1024:{limit}") as node:
        held: list[socket.socket] = []
        errors: list[str] = []
        try:
            flooder = threading.Thread(
                target=_flood, args=(node, 5000, held, errors), name="raft-flood", daemon=True
            )
            flooder.start()
            latencies: list[float] = []
            end = time.monotonic() + 120
            while (flooder.is_alive() or len(latencies) < 10) and time.monotonic() < end:
                latencies.append(_timed_persistent_write(node, len(latencies)))
            flooder.join(60)
            assert not flooder.is_alive()
            assert not errors, errors[:5]
            assert len(held) == 5000
            assert max(latencies) < WRITE_BOUND_S, sorted(latencies)[-5:]
            print(f"flood: {len(latencies)} writes, max {max(latencies):.3f}s")
            # The last connections may still wait in the listen backlog for a moment.
            stats = wait_for(lambda: (s := _transport(node))["accepted"] >= 5000 and s, 10)
            assert stats["unauthenticated"] <= 512, stats
            assert stats["shed"] + stats["authTimeouts"] >= 5000 - 512, stats
            assert _handshake(node)  # the port still serves peers
            assert node.proc is not None and node.proc.poll() is None
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: _transport(node)["unauthenticated"] == 0, 15, message="all released")


@pytest.mark.slow
def test_out_of_descriptors_the_raft_port_sheds_instead_of_closing(tmp_path: Path):
    raise_fd_limit()  # this test process opens thousands of sockets too
    # soft = hard: the node cannot raise it, and accept() runs into EMFILE.
    with _node(tmp_path, "256:256") as node:
        held: list[socket.socket] = []
        errors: list[str] = []
        try:
            _flood(node, 600, held, errors)
            assert not errors, errors[:5]
            stats = wait_for(lambda: (s := _transport(node))["acceptErrors"] >= 1 and s, 10)
            assert stats["shed"] >= 1, stats
            assert _handshake(node)  # the listener survived EMFILE
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: _transport(node)["unauthenticated"] == 0, 15, message="all released")
        assert _timed_persistent_write(node, 0) < WRITE_BOUND_S
        assert _handshake(node)


def test_a_batch_stays_near_1_mib_so_the_16_mib_cap_never_cuts_a_forwarded_command():
    from raft import guard
    from raft.service import MAX_BATCH, MAX_BATCH_BYTES, _batch_length, _Pending

    def pending(size: int) -> _Pending:
        item = _Pending("key", {"metadata": "m" * size})
        item.encoded = f'["key",{{"metadata":"{"m" * size}"}}]'
        return item

    big = [pending(300 * 1024) for _ in range(10)]
    assert _batch_length(big) == 4  # stops at the change that reaches 1 MiB
    assert _batch_length(big[:1]) == 1
    assert _batch_length([pending(10) for _ in range(MAX_BATCH + 5)]) == MAX_BATCH
    # Worst case: just under the bound, plus one change as large as a request body (1 MiB),
    # grown by pickle, incompressible zlib and Fernet's base64, stays far below the cap.
    worst = (MAX_BATCH_BYTES + 1024 * 1024 + 1024) * 4 // 3 + 1024
    assert worst * 4 < guard.MAX_MESSAGE
