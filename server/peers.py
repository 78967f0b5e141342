"""Requests to other members sent from the event loop: the forward of a write to the member that
owns its service, without a thread waiting on it.

The request arrives complete (``lib.blocking.PeerCall``: target, body, signed headers, timeout),
so this module only moves bytes: a few kept-alive connections per peer, one request at a time
each, HTTP/1.1 answers parsed by httptools. A request that fails on a *reused* connection
before any byte of its answer (the peer closed it while idle) is sent once more on a fresh one,
as ``distro.transport.HttpPeerTransport`` does: forwarded writes are idempotent.

Runs on the loop thread only; owned by the :class:`~server.serving.NamingServer`, which closes it
when it stops.
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast

import httptools

from lib.blocking import PeerCall, PeerReply

# Connections kept open per peer; more concurrent forwards wait for one.
PER_PEER = 16


class PeerFailed(Exception):
    def __init__(self, reason: str, refused: bool = False, sent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused
        self.sent = sent  # False: nothing of the answer arrived (safe to resend on a new one)


class _PeerConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[PeerReply] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.answered = False  # some byte of the current answer arrived
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(PeerFailed("connection closed", sent=self.answered))

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PeerFailed(f"bad answer: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        reply = PeerReply(status, self.headers, b"".join(self.body))
        if not self.parser.should_keep_alive():
            self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def _fail(self, exc: PeerFailed) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, call: PeerCall) -> asyncio.Future[PeerReply]:
        assert self.transport is not None
        self.headers, self.body, self.answered = {}, [], False
        self.waiter = asyncio.get_running_loop().create_future()
        head = [f"{call.method} {call.target} HTTP/1.1\r\nHost: {call.peer}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in call.headers.items())
        if "Content-Length" not in call.headers:
            head.append(f"Content-Length: {len(call.body)}\r\n")
        head.append("\r\n")
        self.transport.write("".join(head).encode("latin-1") + call.body)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class PeerClient:
    """Pooled keep-alive connections to peers, for the loop thread."""

    def __init__(self, per_peer: int = PER_PEER) -> None:
        self._per_peer = per_peer
        self._idle: dict[str, collections.deque[_PeerConnection]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.sent = 0
        self.failed = 0

    async def send(self, call: PeerCall) -> PeerReply:
        """The peer's answer, or :class:`PeerFailed` (timeout, refused, closed)."""
        slots = self._slots.get(call.peer)
        if slots is None:
            slots = self._slots[call.peer] = asyncio.Semaphore(self._per_peer)
        try:
            async with asyncio.timeout(call.timeout):
                async with slots:
                    reply = await self._send(call)
        except TimeoutError:
            self.failed += 1
            raise PeerFailed(f"no answer within {call.timeout:g}s") from None
        except PeerFailed:
            self.failed += 1
            raise
        self.sent += 1
        return reply

    async def _send(self, call: PeerCall) -> PeerReply:
        for _ in range(2):
            connection, reused = await self._checkout(call.peer)
            try:
                reply = await connection.send(call)
            except PeerFailed as exc:
                connection.close()
                if reused and not exc.sent:
                    self._discard(call.peer)  # its idle siblings are as stale
                    continue
                raise
            except BaseException:  # cancelled (the timeout): the answer may still come
                connection.close()
                raise
            if not connection.closed:
                self._idle.setdefault(call.peer, collections.deque()).append(connection)
            return reply
        raise PeerFailed("connection closed twice")

    async def _checkout(self, peer: str) -> tuple[_PeerConnection, bool]:
        idle = self._idle.get(peer)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection, True
        host, _, port = peer.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(_PeerConnection, host, int(port))
        except ConnectionRefusedError:
            raise PeerFailed("connection refused", refused=True) from None
        except OSError as exc:
            raise PeerFailed(type(exc).__name__) from None
        return protocol, False

    def _discard(self, peer: str) -> None:
        for connection in self._idle.pop(peer, ()):
            connection.close()

    def close(self) -> None:
        for peer in list(self._idle):
            self._discard(peer)
