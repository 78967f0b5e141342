"""``server.peers.PeerClient``: the event loop's forwards, against small real servers on loopback
(kept-alive answers, a peer that closes idle connections, one that refuses, one that is silent)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lib.blocking import PeerCall
from server.peers import PeerClient, PeerFailed
from testkit.own_loop import run_on_own_thread


def call(port: int, timeout: float = 2.0, body: bytes = b"x=1") -> PeerCall:
    return PeerCall(
        f"127.0.0.1:{port}",
        "POST",
        "/nacos/v1/ns/instance?serviceName=s",
        body,
        {"X-Test": "1"},
        timeout,
    )


async def serve(
    answer: bytes, close_after_answer: bool = False
) -> tuple[asyncio.Server, list[bytes]]:
    """A peer that answers every request with ``answer``; records what it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                received.append(head + await reader.readexactly(length))
                writer.write(answer)
                await writer.drain()
                if close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, received


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok"


def test_answers_are_read_and_the_connection_is_kept() -> None:
    async def main() -> None:
        server, received = await serve(OK)
        client = PeerClient()
        for _ in range(3):
            reply = await client.send(call(port_of(server)))
            assert (reply.status, reply.body) == (200, b"ok")
            assert reply.headers["Content-Type"] == "application/json"
        assert len(received) == 3
        assert b"X-Test: 1" in received[0] and received[0].endswith(b"x=1")
        assert b"Content-Length: 3" in received[0]
        assert client.sent == 3 and client.failed == 0
        client.close()
        server.close()

    run_on_own_thread(main)


def test_a_connection_the_peer_closed_while_idle_is_replaced() -> None:
    async def main() -> None:
        # The peer closes every connection after one answer (no Connection: close said).
        server, received = await serve(OK, close_after_answer=True)
        client = PeerClient()
        assert (await client.send(call(port_of(server)))).status == 200
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert (await client.send(call(port_of(server)))).status == 200
        assert len(received) == 2
        client.close()
        server.close()

    run_on_own_thread(main)


def test_refused_and_silent_peers_fail_with_a_reason() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        client = PeerClient()
        with pytest.raises(PeerFailed) as refused:
            await client.send(call(free))
        assert refused.value.refused

        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (in the backlog) and never answers
        try:
            with pytest.raises(PeerFailed) as timed_out:
                await client.send(call(silent.getsockname()[1], timeout=0.3))
            assert not timed_out.value.refused
            assert "0.3" in timed_out.value.reason
        finally:
            silent.close()
        assert client.failed == 2
        client.close()

    run_on_own_thread(main)


def test_a_malformed_answer_is_a_failure_not_a_hang() -> None:
    async def main() -> None:
        server, _ = await serve(b"NOT HTTP AT ALL\r\n\r\n")
        client = PeerClient()
        with pytest.raises(PeerFailed):
            await client.send(call(port_of(server), timeout=2.0))
        client.close()
        server.close()

    run_on_own_thread(main)
