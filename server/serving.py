"""The node's HTTP server: one asyncio event loop (uvloop) parsing with httptools, in the node
process, with a bounded pool of worker threads for whatever may wait.

Why this shape (the measurements are in docs/benchmarks.md, "Serving stack"):

- **One process owns all live state.** The loop runs on the node's main thread; there is no
  worker process and no supervisor holding state.
- **The hot routes run on the loop.** A beat, a list or an owned ephemeral register is pure
  memory work that costs less than a handoff to a thread and back; :mod:`lib.blocking` marks the
  few places below them that wait on I/O (a forward, a Raft commit, a sync-ack, a password hash),
  which raise ``MustOffload`` on the loop *before* changing anything, and the request is then run
  again from the start on a worker. Every other route (the console, the admin API, operator
  endpoints, logins) goes straight to a worker. So a slow request never holds the loop, and the
  requests that carry the load never pay a thread switch.
- **Idle connections cost a few kilobytes and no thread**, so thousands of open keep-alive (and,
  later, long-poll or event-stream) connections are held by the one loop thread.

Kept from the hardened waitress loop it replaces (issue #8):

- the descriptor limit is raised at start and the connection limit bounded by it, leaving
  :data:`FD_RESERVE` descriptors for Raft, peers, SQLite and Redis;
- at the connection limit the longest-idle connections with no request in progress are closed,
  a batch at a time; only when every connection has work is the newcomer closed at once;
- ``Expect: 100-continue`` gets its ``100`` only when a body is announced, and a body over the
  limit is refused with 413 before it is sent;
- on SIGTERM the listener closes first, requests in progress get ``NAMING_HTTP_DRAIN_S``
  (2 s), then every connection is closed and the workers stopped.

Threads: the loop runs on the caller's (main) thread and stops on SIGTERM/SIGINT (or
:meth:`NamingServer.request_stop`); the ``http-worker`` threads belong to the server's executor,
which :meth:`NamingServer.run` shuts down after the drain.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import io
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools
import uvloop

from lib.blocking import Deferred, MustOffload, PeerReply, clear_loop_thread, mark_loop_thread
from lib.watching import EventStream, Held
from naming.feed import ChangeFeed, FeedEvent
from server.peers import PeerClient, PeerFailed
from server.watching import Stream, Waiter, Watchers

log = logging.getLogger("server.serving")

# Descriptors kept out of the HTTP connection budget: Raft and peer connections, the journal,
# SQLite, Redis, the push socket, log files.
FD_RESERVE = 512
# A connection with nothing in progress and no byte received for this long is closed (waitress's
# channel_timeout was the same).
IDLE_TIMEOUT_S = 120.0
MAINTENANCE_EVERY_S = 5.0
MAX_HEADER_BYTES = 64 * 1024  # Nacos clients send everything in the query string
MAX_BODY_BYTES = 8 * 1024 * 1024
# Requests read ahead of the one in progress on a pipelining connection; past it, reading pauses.
MAX_PIPELINED = 16
BACKLOG = 2048
SERVER_NAME = b"nacos-py"

Rendered = tuple[str, list[tuple[str, str]], bytes]  # status line, headers, body
# What the application may answer besides a body: a forward to send (Deferred), a wait for a
# change (Held) or an event stream (EventStream): see lib/blocking.py and lib/watching.py.
Answer = Deferred[Rendered] | Held[Rendered] | EventStream[FeedEvent]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes] | Answer]
DEFAULT_EVENTS_KEEPALIVE_S = 15.0
DEFAULT_EVENTS_MAX_STREAMS = 10_000


def bounded_connection_limit(wanted: int, fd_limit: int) -> int:
    """``wanted``, lowered so HTTP clients alone can never exhaust the descriptors."""
    return max(16, min(wanted, fd_limit - FD_RESERVE))


@dataclass
class ServingStats:
    """Written by the loop thread only; read (whole ints) by the metrics view."""

    connection_limit: int = 0
    fd_limit: int = 0
    threads: int = 0
    accepted: int = 0
    shed_idle: int = 0  # idle connections closed to admit new ones at the limit
    refused_busy: int = 0  # new connections closed because every connection had work
    accept_errors: int = 0  # accept() failures reported by the loop
    idle_closed: int = 0  # connections closed after IDLE_TIMEOUT_S without a request
    bad_requests: int = 0  # unparseable or oversized requests answered 400/413/431
    served_on_loop: int = 0
    offloaded: int = 0  # hot requests that reached a blocking step and moved to a worker
    served_by_workers: int = 0
    forwarded_on_loop: int = 0  # forwards sent by the loop itself (no thread waited)
    app_errors: int = 0  # the application raised instead of answering (a bug): answered 500


class _Request:
    __slots__ = ("body", "header_bytes", "headers", "keep_alive", "method", "url", "version")

    def __init__(self) -> None:
        self.method = "GET"
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.keep_alive = True
        self.version = "1.1"
        self.header_bytes = 0


class _TooLarge(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_REASONS = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large"}


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue in order, answer in order (HTTP/1.1 pipelining)."""

    def __init__(self, server: NamingServer, facade: str = "") -> None:
        self.server = server
        # The protocol facade whose port this connection came in on ("" for the main port):
        # ``server.wsgi`` serves each facade's paths on its own port only.
        self.facade = facade
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None  # being parsed
        self.queue: collections.deque[_Request] = collections.deque()  # parsed, not yet served
        self.busy = False  # a request is with a worker (or being written)
        self.closing = False
        self.paused = False
        self.last_activity = time.monotonic()
        self.peer: tuple[str, int] = ("", 0)
        self.body_bytes = 0
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.watch: Waiter | Stream | None = None  # held or streaming (server/watching.py)

    # -- asyncio callbacks (loop thread) ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport; it has its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.server.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.watch is not None:
            self.server.watchers.forget(self.watch)
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised in HttpParserCallbackError.
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self.refuse(cause.status, cause.reason)
            else:
                self.refuse(400, f"malformed request: {exc}")

    def eof_received(self) -> bool | None:
        # The client will send nothing more; answer what it sent, then close.
        self.eof = True
        if self.watch is not None:
            # Except an answer that waits or streams: it has no end to answer up to, and its
            # client has left (as proxies take a close while a response is open). Kept, it would
            # hold its stream slot or wait until a keep-alive write failed or the wait ran out.
            self.server.watchers.forget(self.watch)
            self.busy = False
            return None
        if not self.busy and not self.queue:
            return None  # asyncio closes the transport
        return True

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        request = self.current
        assert request is not None
        request.url += url
        request.header_bytes += len(url)
        if request.header_bytes > MAX_HEADER_BYTES:
            raise _TooLarge(431, f"request line and headers over {MAX_HEADER_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        assert request is not None
        request.headers.append((name, value))
        request.header_bytes += len(name) + len(value) + 4
        if request.header_bytes > MAX_HEADER_BYTES:
            raise _TooLarge(431, f"request line and headers over {MAX_HEADER_BYTES} bytes")

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None
        parser = self.parser
        request.method = parser.get_method().decode("latin-1")
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        length = -1
        expect = False
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _TooLarge(400, "bad Content-Length") from None
            elif lowered == b"expect" and value.lower() == b"100-continue":
                expect = True
        if length > MAX_BODY_BYTES:
            raise _TooLarge(413, f"request body over {MAX_BODY_BYTES} bytes")
        # Only when a body is announced: with none, the answer itself is the final response.
        if expect and length > 0 and request.version == "1.1" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self.current
        assert request is not None
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            raise _TooLarge(413, f"request body over {MAX_BODY_BYTES} bytes")
        request.body.append(body)

    def on_message_complete(self) -> None:
        request = self.current
        assert request is not None
        self.current = None
        self.queue.append(request)
        if len(self.queue) > MAX_PIPELINED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        if not self.busy:
            self.serve_queue()

    # -- serving ----------------------------------------------------------------------------

    def has_work(self) -> bool:
        """A request queued or in progress. One still arriving does not count: a client that
        stalls mid-request is as idle as one that sends nothing."""
        return self.busy or bool(self.queue)

    def serve_queue(self) -> None:
        while self.queue and not self.busy and not self.closing:
            request = self.queue.popleft()
            if self.paused and len(self.queue) <= MAX_PIPELINED // 2 and self.transport:
                self.paused = False
                self.transport.resume_reading()
            self.server.serve(self, request)

    def finish(self, request: _Request, response: bytes) -> None:
        """Write one response (loop thread), then go on with the queue."""
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        self.last_activity = time.monotonic()
        if not request.keep_alive or self.server.draining or (self.eof and not self.queue):
            self.closing = True
            transport.close()
            return
        if self.queue:
            self.serve_queue()

    def refuse(self, status: int, reason: str) -> None:
        """Answer a request that cannot be parsed or is too large, then close."""
        self.server.stats.bad_requests += 1
        self.queue.clear()
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            body = f"caused: {reason};".encode()
            self.transport.write(
                render_head(f"{status} {_REASONS.get(status, 'Bad Request')}", [], len(body), False)
                + body
            )
            self.transport.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class NamingServer:
    """Binds at construction (a starting node answers ``STARTING`` instead of refusing), serves
    in :meth:`run` until a signal, then drains and returns."""

    def __init__(
        self,
        application: WsgiApp,
        host: str,
        port: int,
        threads: int,
        connection_limit: int,
        fd_limit: int,
        loop_paths: frozenset[str] = frozenset(),
        drain_s: float = 2.0,
        feed: ChangeFeed | None = None,
        events_keepalive_s: float = DEFAULT_EVENTS_KEEPALIVE_S,
        events_max_streams: int = DEFAULT_EVENTS_MAX_STREAMS,
        facade_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.application = application
        self.drain_s = drain_s
        self.loop_paths = loop_paths
        self.host = host
        self.port = port
        self.connection_limit = connection_limit
        self.stats = ServingStats(
            connection_limit=connection_limit, fd_limit=fd_limit, threads=threads
        )
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self._shedding: set[HttpConnection] = set()
        self._shed_batch = max(1, connection_limit // 10)
        self._workers = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http-worker")
        self.peers = PeerClient()
        self.watchers = Watchers(self, feed, events_keepalive_s, events_max_streams)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._base_environ = {
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        self.sock = _listen(host, port)
        # One more listener per protocol facade that was given a port (Eureka, airlift): the
        # same loop, workers, limits and application; only the paths served differ by port.
        self.facade_ports = dict(facade_ports or {})
        self.facade_socks: dict[str, socket.socket] = {}
        try:
            for facade, facade_port in self.facade_ports.items():
                self.facade_socks[facade] = _listen(host, facade_port)
        except OSError:
            self.close_sockets()
            raise

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    # -- connections (loop thread) ----------------------------------------------------------

    def admit(self, connection: HttpConnection) -> None:
        if self.draining:
            connection.close()
            return
        self._shedding = {c for c in self._shedding if not c.closing}
        at_limit = len(self.connections) - len(self._shedding) >= self.connection_limit
        if at_limit and self._shed(self._shed_batch) == 0:
            self.stats.refused_busy += 1
            connection.close()
            return
        self.stats.accepted += 1
        self.connections.add(connection)

    def forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        self._shedding.discard(connection)

    def _shed(self, count: int) -> int:
        """Close up to ``count`` longest-idle connections without work."""
        idle = (c for c in self.connections if not c.has_work() and not c.closing)
        victims = heapq.nsmallest(count, idle, key=lambda c: c.last_activity)
        for connection in victims:
            connection.close()
            self._shedding.add(connection)
        self.stats.shed_idle += len(victims)
        if victims:
            log.info(
                "connection limit %d reached: closed %d idle connections",
                self.connection_limit,
                len(victims),
            )
        return len(victims)

    def _maintenance(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self.connections if not c.has_work()]:
            if now - connection.last_activity > IDLE_TIMEOUT_S:
                self.stats.idle_closed += 1
                connection.close()
        if self._loop is not None and not self.draining:
            self._loop.call_later(MAINTENANCE_EVERY_S, self._maintenance)

    # -- requests (loop thread) -------------------------------------------------------------

    def serve(self, connection: HttpConnection, request: _Request) -> None:
        environ = self._environ(connection, request)
        if environ["PATH_INFO"] in self.loop_paths:
            try:
                response = self._call(environ, request)
            except MustOffload:
                self.stats.offloaded += 1
                first = environ
                environ = self._environ(connection, request)  # its body may have been read
                # What the first run established for the re-run (a verified peer signature).
                environ.update((k, v) for k, v in first.items() if k.startswith("naming."))
            else:
                self.stats.served_on_loop += 1
                if isinstance(response, (Held, EventStream)):
                    self._watch(connection, request, response)
                    return
                if isinstance(response, Deferred):
                    connection.busy = True
                    task = self._loop_now().create_task(
                        self._deferred(connection, request, response)
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    return
                connection.finish(request, response)
                return
        connection.busy = True
        future = self._workers.submit(self._call, environ, request)
        loop = self._loop_now()

        def done(f: Future[bytes | Answer]) -> None:
            loop.call_soon_threadsafe(self._worker_done, connection, request, f)

        future.add_done_callback(done)

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        assert loop is not None, "serving starts in run()"
        return loop

    def _worker_done(
        self, connection: HttpConnection, request: _Request, f: Future[bytes | Answer]
    ) -> None:
        self.stats.served_by_workers += 1
        try:
            response = f.result()
        except BaseException:  # cancelled at shutdown
            connection.busy = False
            connection.close()
            return
        if isinstance(response, (Held, EventStream)):
            self._watch(connection, request, response)
            return
        if isinstance(response, Deferred):  # only the loop defers; a worker forwards itself
            response = self._failed(request, "a worker got a deferred answer")
        connection.finish(request, response)

    def _watch(
        self,
        connection: HttpConnection,
        request: _Request,
        answer: Held[Rendered] | EventStream[FeedEvent],
    ) -> None:
        if isinstance(answer, Held):
            self.watchers.hold(connection, request, answer)
        else:
            self.watchers.stream(connection, request, answer)

    def stream_head(self, headers: list[tuple[str, str]]) -> bytes:
        """The head of a stream: no length, and the connection ends with the stream."""
        return render_head("200 OK", headers, -1, False)

    async def _deferred(
        self, connection: HttpConnection, request: _Request, deferred: Deferred[Rendered]
    ) -> None:
        """Send a hot request's peer call (a forward) and answer once the peer did."""
        try:
            reply = await self.peers.send(deferred.call)
        except PeerFailed as exc:
            outcome: tuple[PeerReply | None, str, bool] = (None, exc.reason, exc.refused)
        else:
            outcome = (reply, "", False)
        self.stats.forwarded_on_loop += 1
        try:
            status, headers, body = deferred.complete(*outcome)
            response = self._render(request, status, headers, body)
        except Exception:
            response = self._failed(request, "completing a forward")
        connection.finish(request, response)

    def _failed(self, request: _Request, what: str) -> bytes:
        self.stats.app_errors += 1
        log.exception("unhandled error serving %s %r: %s", request.method, request.url, what)
        return self._render(request, "500 Internal Server Error", [], b"caused: internal error;")

    def _environ(self, connection: HttpConnection, request: _Request) -> dict[str, Any]:
        path, _, query = request.url.partition(b"?")
        path = path.partition(b"#")[0]
        environ = dict(self._base_environ)
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["SERVER_PROTOCOL"] = f"HTTP/{request.version}"
        environ["REMOTE_ADDR"], port = connection.peer
        if connection.facade:
            environ["naming.facade"] = connection.facade
            environ["SERVER_PORT"] = str(self.facade_ports[connection.facade])
        environ["REMOTE_PORT"] = str(port)
        body = b"".join(request.body) if request.body else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body)) if body else ""
        for name, value in request.headers:
            key = _HEADER_KEYS.get(name)
            if key is None:
                key = _header_key(name)
            if not key:
                continue  # Content-Length: the body as received is what counts
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        return environ

    def _call(self, environ: dict[str, Any], request: _Request) -> bytes | Answer:
        """Run the application and render the whole response (on the loop or a worker)."""
        captured: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            captured[:] = [status, headers]
            return None

        try:
            result = self.application(environ, start_response)
            if isinstance(result, (Deferred, Held, EventStream)):
                return result
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except MustOffload:
            raise
        except Exception:
            return self._failed(request, "the application raised")
        status, headers = captured
        return self._render(request, status, headers, body)

    def _render(
        self, request: _Request, status: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        keep_alive = request.keep_alive and not self.draining
        head = render_head(status, headers, len(body), keep_alive)
        return head if request.method == "HEAD" else head + body

    # -- running and stopping (main thread) -------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`), then drain and close."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        loop.set_exception_handler(self._loop_error)
        mark_loop_thread()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        servers: list[asyncio.AbstractServer] = [
            await loop.create_server(lambda: HttpConnection(self), sock=self.sock, backlog=BACKLOG)
        ]
        for facade, sock in self.facade_socks.items():
            servers.append(
                await loop.create_server(
                    functools.partial(HttpConnection, self, facade), sock=sock, backlog=BACKLOG
                )
            )
        loop.call_later(MAINTENANCE_EVERY_S, self._maintenance)
        self.watchers.start(loop)
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(servers)
            clear_loop_thread()

    def _on_signal(self, signum: int) -> None:
        log.info("signal %s: shutting down", signum)
        self.request_stop()

    def request_stop(self) -> None:
        """Thread-safe: ask the loop to drain and return from :meth:`run`."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # accept() failures (out of descriptors) land here: count them, keep serving.
        self.stats.accept_errors += 1
        log.warning("event loop: %s", context.get("message"), exc_info=context.get("exception"))

    async def _shutdown(self, servers: list[asyncio.AbstractServer]) -> None:
        """Refuse new connections, let requests in progress finish (bounded), close the rest."""
        self.draining = True
        for server in servers:
            server.close()  # the listeners: callers are refused from now on
        self.watchers.shutdown()  # held requests answer now, streams end
        # Read what already arrived first: a request in the socket buffer is then answered
        # rather than reset with the connection.
        await asyncio.sleep(0)
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline:
            for connection in list(self.connections):
                if not connection.has_work():
                    connection.close()
            if not any(c.has_work() for c in self.connections):
                break
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        self.peers.close()
        self._workers.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0)  # let the transports close

    def close(self) -> None:
        """Release the listening sockets if :meth:`run` never ran (start-up failed)."""
        if self._loop is None:
            self.close_sockets()
            self._workers.shutdown(wait=False, cancel_futures=True)

    def close_sockets(self) -> None:
        self.sock.close()
        for sock in self.facade_socks.values():
            sock.close()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# Header name as sent -> its WSGI environ key; filled as names are seen (clients send the same few
# names in the same spelling), bounded so invented names cannot grow it.
_HEADER_KEYS: dict[bytes, str] = {}
_HEADER_KEYS_MAX = 512


def _header_key(name: bytes) -> str:
    upper = name.decode("latin-1").upper().replace("-", "_")
    if upper == "CONTENT_LENGTH":
        key = ""
    elif upper == "CONTENT_TYPE":
        key = upper
    else:
        key = "HTTP_" + upper
    if len(_HEADER_KEYS) < _HEADER_KEYS_MAX:
        _HEADER_KEYS[name] = key
    return key


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
_date_cache: list[Any] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    value: bytes = _date_cache[1]
    return value


def render_head(
    status: str, headers: list[tuple[str, str]], length: int, keep_alive: bool
) -> bytes:
    parts = [b"HTTP/1.1 ", status.encode("latin-1"), b"\r\nServer: ", SERVER_NAME, b"\r\n"]
    parts.append(_date_header())
    for name, value in headers:
        if name.lower() in _HOP_BY_HOP:
            continue
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if length >= 0:  # a stream has none: chunked, or delimited by the close
        parts.append(b"Content-Length: %d\r\n" % length)
    parts.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    return b"".join(parts)


_current: NamingServer | None = None


def status() -> dict[str, Any] | None:
    """The serving counters for operator/metrics (None when no server runs in this process)."""
    server = _current
    if server is None:
        return None
    busy = sum(1 for c in list(server.connections) if c.has_work())
    return {
        "openConnections": server.open_connections,
        "busyConnections": busy,  # this metrics request's own connection included
        **_camel(asdict(server.stats)),
        "watch": _camel(server.watchers.status()),  # held requests and event streams
    }


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(k): v for k, v in values.items()}


def make_server(
    host: str,
    port: int,
    threads: int,
    connection_limit: int,
    fd_limit: int,
    drain_s: float = 2.0,
    feed: ChangeFeed | None = None,
    events_keepalive_s: float = DEFAULT_EVENTS_KEEPALIVE_S,
    events_max_streams: int = DEFAULT_EVENTS_MAX_STREAMS,
    facade_ports: Mapping[str, int] | None = None,
) -> NamingServer:
    """The node's server; ``connection_limit`` is bounded by ``fd_limit`` here."""
    global _current
    # Imported here, not at the top: it builds the Django application (and imports every
    # view) as a side effect, which only a serving process should pay for.
    from server.wsgi import LOOP_PATHS, application

    limit = bounded_connection_limit(connection_limit, fd_limit)
    if limit < connection_limit:
        log.warning(
            "HTTP connection limit lowered from %d to %d (descriptor limit %d)",
            connection_limit,
            limit,
            fd_limit,
        )
    server = NamingServer(
        application,
        host,
        port,
        threads,
        limit,
        fd_limit,
        LOOP_PATHS,
        drain_s=drain_s,
        feed=feed,
        events_keepalive_s=events_keepalive_s,
        events_max_streams=events_max_streams,
        facade_ports=facade_ports,
    )
    _current = server
    return server
