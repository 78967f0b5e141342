"""Hardening of pysyncobj 0.3.17's TCP transport (the raft port) against hostile connections.

What the library does and what we change (issue #8):
- it reads a 4-byte length (up to 2 GiB), appends every ``recv`` to a growing ``bytes`` (quadratic
  copying) and keeps reading on the tick thread for as long as the sender keeps sending, then
  decrypts at the end: a ``0x7fffffff`` prefix and 48 MiB of junk froze Raft for ~5 s. We check
  the length prefix before buffering: a connection that has not yet proven the password (its first
  message decrypted) may send at most ``MAX_UNAUTHENTICATED_MESSAGE`` (the handshake is ~150
  bytes), an authenticated peer ``MAX_MESSAGE``. The buffer is a ``bytearray`` and one poll event
  reads at most ``READ_BUDGET`` bytes, so no connection holds the tick thread for long;
- an incoming connection that sends nothing is kept forever (the library's timeout is only checked
  when the socket has an event): one that has not authenticated within ``AUTH_DEADLINE_S`` is
  closed, and at most ``MAX_UNAUTHENTICATED`` are kept (the oldest is shed for a new one);
- ``accept`` failing with EMFILE *unbinds the server for good* (the raft port is gone until a
  restart), and the listener accepts one connection per tick from a backlog of 5: an accept error
  never unbinds (we shed an unauthenticated connection, or pause the listener for a moment), up
  to ``ACCEPTS_PER_EVENT`` are accepted per event, and the backlog is ``LISTEN_BACKLOG``;
- a garbage or oversized message was dropped without a word: every dropped connection is counted
  (:func:`stats`, in ``operator/metrics`` as ``raftTransport``) and logged, at most once per
  ``LOG_INTERVAL_S`` with the counts since the last line.

Largest legitimate message, for the caps: append-entries batches are ~64 KiB of entries plus one
entry, and an entry of 64 KiB or more is sent alone in 64 KiB chunks; snapshots go in 64 KiB
chunks (``logCompactionBatchSize``); a follower forwards a whole command to the leader unchunked,
and our commands are the batcher's, bounded by ``raft.service.MAX_BATCH_BYTES`` (1 MiB) plus one
change (a request body is at most 1 MiB). Pickling, zlib and Fernet (base64, x4/3) keep that
under 2 MiB on the wire: 16 MiB leaves a wide margin and still bounds what one peer can pin.

No thread of its own: everything here runs on pysyncobj's tick thread (the accept handler, the
reads, and the sweep, which runs from the transport's per-tick callback). The stats are guarded
by a lock because one process may run several SyncObj (unit tests).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("raft.guard")

MAX_UNAUTHENTICATED_MESSAGE = 64 * 1024
MAX_MESSAGE = 16 * 1024 * 1024
READ_BUDGET = 1024 * 1024
AUTH_DEADLINE_S = 5.0
MAX_UNAUTHENTICATED = 512
ACCEPTS_PER_EVENT = 64
LISTEN_BACKLOG = 1024
ACCEPT_PAUSE_S = 0.2
LOG_INTERVAL_S = 10.0

# Errors of accept() that say "no resources right now", not "this listener is broken".
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass
class GuardStats:
    accepted: int = 0
    authenticated: int = 0
    unauthenticated: int = 0  # held now: accepted, password not proven yet
    oversized: int = 0  # length prefix over the cap
    garbage: int = 0  # did not decrypt / unpickle
    authTimeouts: int = 0  # camelCase: JSON field names
    shed: int = 0  # closed to make room (over MAX_UNAUTHENTICATED, or out of descriptors)
    acceptErrors: int = 0
    listenerPauses: int = 0


_lock = threading.Lock()
_stats = GuardStats()
_pending_log: dict[str, int] = {}
_last_peer = ""
_last_log = 0.0


def stats() -> dict[str, int]:
    with _lock:
        return asdict(_stats)


def _count(field: str, delta: int = 1) -> None:
    with _lock:
        setattr(_stats, field, getattr(_stats, field) + delta)


def _dropped(reason: str, peer: str) -> None:
    """Count a dropped connection and log it, rate-limited."""
    global _last_peer
    with _lock:
        setattr(_stats, reason, getattr(_stats, reason) + 1)
        _pending_log[reason] = _pending_log.get(reason, 0) + 1
        _last_peer = f"{peer} ({reason})"
    flush_log()


def flush_log(now: float | None = None) -> None:
    global _last_log
    now = time.monotonic() if now is None else now
    with _lock:
        if not _pending_log or now - _last_log < LOG_INTERVAL_S:
            return
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(_pending_log.items()))
        last = _last_peer
        _pending_log.clear()
        _last_log = now
    log.warning("raft port dropped connections (%s); last from %s", counts, last)


class _ServerGuard:
    """Per listening socket: the incoming connections that have not proven the password yet."""

    def __init__(self) -> None:
        self.pending: OrderedDict[Any, float] = OrderedDict()  # conn -> deadline, oldest first
        self.paused_until = 0.0

    def add(self, conn: Any, now: float) -> None:
        while len(self.pending) >= MAX_UNAUTHENTICATED:
            self.shed_oldest()
        self.pending[conn] = now + AUTH_DEADLINE_S
        conn._guard_server = self
        _count("unauthenticated")

    def discard(self, conn: Any) -> None:
        if self.pending.pop(conn, None) is not None:
            _count("unauthenticated", -1)

    def shed_oldest(self) -> bool:
        if not self.pending:
            return False
        conn = next(iter(self.pending))
        self.discard(conn)
        _dropped("shed", conn._guard_peer)
        conn.disconnect()
        return True

    def sweep(self, now: float) -> None:
        while self.pending:
            conn, deadline = next(iter(self.pending.items()))
            if deadline > now:
                break
            self.discard(conn)
            _dropped("authTimeouts", conn._guard_peer)
            conn.disconnect()


# -- patched TcpConnection methods -----------------------------------------------------------


def _read_buffer(conn: Any) -> bytearray:
    buf = conn._TcpConnection__readBuffer
    if not isinstance(buf, bytearray):  # connect() and disconnect() reset it to bytes()
        buf = bytearray(buf)
        conn._TcpConnection__readBuffer = buf
    return buf


def _try_read_buffer(conn: Any) -> None:
    budget = READ_BUDGET if conn._guard_authenticated else MAX_UNAUTHENTICATED_MESSAGE + 4
    start = len(_read_buffer(conn))
    while conn._TcpConnection__processRead():
        if len(conn._TcpConnection__readBuffer) - start >= budget:
            break  # the poller is level-triggered: the rest is read on a later tick
    conn._TcpConnection__lastReadTime = _monotonic()


def _process_read(conn: Any) -> bool:
    sock = conn._TcpConnection__socket
    try:
        incoming = sock.recv(conn._TcpConnection__recvBufferSize)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            conn.disconnect()
        return False
    if not incoming:
        conn.disconnect()
        return False
    _read_buffer(conn).extend(incoming)
    return True


def _process_parse_message(conn: Any) -> Any:
    buf = _read_buffer(conn)
    if len(buf) < 4:
        return None
    (length,) = struct.unpack_from("i", buf, 0)
    limit = MAX_MESSAGE if conn._guard_authenticated else MAX_UNAUTHENTICATED_MESSAGE
    if length < 0 or length > limit:
        _reject(conn, "oversized")
        return None
    if len(buf) - 4 < length:
        return None
    data = bytes(buf[4 : 4 + length])
    try:
        if conn.encryptor:
            timestamp = conn.encryptor.extract_timestamp(data)
            if timestamp < conn.recvLastTimestamp:
                raise ValueError("timestamp went back")
            conn.recvLastTimestamp = timestamp
            data = conn.encryptor.decrypt(data)
        message = _pickle_loads(zlib.decompress(data))
        if conn.recvRandKey:
            rand_key, message = message
            if rand_key != conn.recvRandKey:
                raise ValueError("wrong session key")
    except Exception:
        _reject(conn, "garbage")
        return None
    del buf[: 4 + length]
    if not conn._guard_authenticated:
        conn._guard_authenticated = True
        server = conn._guard_server
        if server is not None:
            server.discard(conn)
            _count("authenticated")
    return message


def _reject(conn: Any, reason: str) -> None:
    server = conn._guard_server
    if server is not None:
        server.discard(conn)
    _dropped(reason, conn._guard_peer)
    conn.disconnect()


def _wrap_disconnect(original: Any) -> Any:
    def disconnect(conn: Any) -> None:
        server = conn._guard_server
        if server is not None:
            server.discard(conn)
            conn._guard_server = None
        conn._guard_authenticated = False  # an outgoing connection is reused for reconnects
        original(conn)

    return disconnect


# -- patched TcpServer methods ---------------------------------------------------------------


def _wrap_bind(original: Any) -> Any:
    def bind(server: Any) -> None:
        original(server)
        server._TcpServer__socket.listen(LISTEN_BACKLOG)
        server._guard = _ServerGuard()

    return bind


def _on_new_connection(server: Any, descr: int, event: int) -> None:
    from pysyncobj.poller import POLL_EVENT_TYPE
    from pysyncobj.tcp_connection import TcpConnection

    guard: _ServerGuard = server._guard
    if event & POLL_EVENT_TYPE.READ:
        for _ in range(ACCEPTS_PER_EVENT):
            try:
                sock, addr = server._TcpServer__socket.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                _count("acceptErrors")
                _dropped_accept(exc)
                if exc.errno in _RESOURCE_ERRORS and guard.shed_oldest():
                    continue  # a descriptor is free again
                # Nothing of ours to shed (or an odd error): stop polling the listener for a
                # moment instead of spinning on it; the sweep resubscribes it.
                server._TcpServer__poller.unsubscribe(descr)
                guard.paused_until = _monotonic() + ACCEPT_PAUSE_S
                _count("listenerPauses")
                break
            try:
                send_size, recv_size = (
                    server._TcpServer__sendBufferSize,
                    server._TcpServer__recvBufferSize,
                )
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_size)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                conn = TcpConnection(
                    poller=server._TcpServer__poller,
                    socket=sock,
                    timeout=server._TcpServer__connectionTimeout,
                    sendBufferSize=send_size,
                    recvBufferSize=recv_size,
                    keepalive=server._TcpServer__keepalive,
                )
            except OSError:
                sock.close()  # reset by the peer before we got to it
                continue
            conn._guard_peer = f"{addr[0]}:{addr[1]}"
            _count("accepted")
            guard.add(conn, _monotonic())
            server._TcpServer__onNewConnectionCallback(conn)
    if event & POLL_EVENT_TYPE.ERROR:
        log.error("raft listener reported an error; it is closed until the node restarts")
        server.unbind()


def _dropped_accept(exc: OSError) -> None:
    global _last_peer
    with _lock:
        _pending_log["acceptErrors"] = _pending_log.get("acceptErrors", 0) + 1
        _last_peer = f"accept() ({exc.strerror})"
    flush_log()


def sweep(server: Any) -> None:
    """Per tick: close connections past their deadline, resume a paused listener, log."""
    from pysyncobj.poller import POLL_EVENT_TYPE

    guard: _ServerGuard | None = getattr(server, "_guard", None)
    if guard is None:
        return
    now = _monotonic()
    guard.sweep(now)
    if guard.paused_until and now >= guard.paused_until:
        guard.paused_until = 0.0
        fileno = server._TcpServer__fileno
        if fileno is not None:
            server._TcpServer__poller.subscribe(
                fileno,
                server._TcpServer__onNewConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR,
            )
    flush_log(now)


def _wrap_transport_tick(original: Any) -> Any:
    def on_tick(transport: Any) -> None:
        original(transport)
        if transport._server is not None:
            sweep(transport._server)

    return on_tick


def _monotonic() -> float:
    return time.monotonic()


def _pickle_loads(data: bytes) -> Any:
    from pysyncobj import pickle

    return pickle.loads(data)


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Patch pysyncobj's TcpConnection, TcpServer and TCPTransport. Idempotent; process-wide."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from pysyncobj import tcp_connection, tcp_server, transport

        conn_cls = tcp_connection.TcpConnection
        conn_cls._guard_authenticated = False
        conn_cls._guard_server = None
        conn_cls._guard_peer = "outgoing"
        conn_cls._TcpConnection__tryReadBuffer = _try_read_buffer
        conn_cls._TcpConnection__processRead = _process_read
        conn_cls._TcpConnection__processParseMessage = _process_parse_message
        conn_cls.disconnect = _wrap_disconnect(conn_cls.disconnect)

        server_cls = tcp_server.TcpServer
        server_cls._guard = None
        server_cls.bind = _wrap_bind(server_cls.bind)
        server_cls._TcpServer__onNewConnection = _on_new_connection

        transport_cls = transport.TCPTransport
        transport_cls._onTick = _wrap_transport_tick(transport_cls._onTick)
        _installed = True
