"""The production WSGI server, run inside the node process (never a second process).

waitress: pure Python, threads in this process, binds at construction so a starting node
answers instead of refusing connections. The measurement behind the choice is in the README.

Adapted for hostile clients (issue #8):

- the loop switches to ``poll()`` once a descriptor reaches 1024: waitress's default
  ``select()`` raises ``ValueError`` for one, which killed the node once ~1,010 idle connections
  were open (below that, select() is kept: its pass is cheaper, see :meth:`poll_once`);
- the descriptor limit is raised at start (``lib.limits.raise_fd_limit``) and the connection
  limit is bounded by it, leaving :data:`FD_RESERVE` descriptors for Raft, peers, SQLite and Redis;
- at the connection limit waitress stops accepting, so the kernel backlog fills with everyone,
  including a normal client. Here the server keeps accepting and sheds instead: the
  longest-idle connections with no request in progress are closed (a batch at a time, so the
  scan is paid once per batch, not once per accept); only when every connection has work in
  progress is the new one closed at once. Counters are in :func:`status` (operator/metrics);
- ``Expect: 100-continue`` with no body got no answer: waitress sends the 100 and then marks the
  (already complete) request incomplete, so it is never served (:class:`_Parser`);
- on shutdown the listener closes first, requests in progress get a short drain, then every
  connection is closed. waitress stopped its loop but left kept-alive connections open, so a
  peer that reused one waited for its own timeout while this process was still stopping.

Threads: the loop runs on the caller's (main) thread; waitress's worker threads are daemons
owned by the task dispatcher and are stopped by :meth:`NamingServer.shutdown`.
"""

from __future__ import annotations

import errno
import heapq
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("server.serving")

# Descriptors kept out of the HTTP connection budget: Raft and peer connections, the journal,
# SQLite, Redis, the push socket, waitress's trigger pipe, log files.
FD_RESERVE = 512
# Wait this long for requests in progress when stopping; idle connections are closed at once.
DRAIN_S = 2.0
# select() watches descriptors below this only (glibc's fd_set); poll() has no such limit.
FD_SETSIZE = 1024
# After accept() fails for lack of descriptors, pause accepting this long (the kernel backlog
# holds the callers) instead of spinning on a listener that stays readable.
ACCEPT_PAUSE_S = 0.05
ACCEPT_ERRORS_LOGGED_EVERY_S = 10.0
ACCEPT_BATCH = 64  # connections accepted per readable event of the listener
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def bounded_connection_limit(wanted: int, fd_limit: int) -> int:
    """``wanted``, lowered so HTTP clients alone can never exhaust the descriptors."""
    return max(16, min(wanted, fd_limit - FD_RESERVE))


@dataclass
class ServingStats:
    """Written by the loop thread only; read (whole ints) by the metrics view."""

    connection_limit: int = 0
    fd_limit: int = 0
    accepted: int = 0
    shed_idle: int = 0  # idle connections closed to admit new ones at the limit
    refused_busy: int = 0  # new connections closed because every connection had work
    accept_errors: int = 0  # accept() failures (out of descriptors, or other)


class _Parser(HTTPRequestParser):
    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.completed:
            # No body is coming (none announced, or the request was already refused at its
            # header): the response is the final answer. waitress would send "100 Continue" and
            # then reset ``completed``, and the request would never be served.
            self.expect_continue = False
        return consumed


class _Channel(HTTPChannel):
    parser_class = _Parser
    server: NamingServer

    def has_work(self) -> bool:
        """A request queued or being served, a response not yet flushed, or closing already.

        A request still arriving does not count: a client that stalls mid-request is as idle
        as one that sends nothing.
        """
        return bool(self.requests or self.total_outbufs_len or self.will_close) or bool(
            self.close_when_flushed
        )

    def readable(self) -> bool:
        if self.server.draining and not self.requests:
            return False  # stopping: take no new request
        return bool(super().readable())


class NamingServer(TcpWSGIServer):
    channel_class = _Channel
    active_channels: dict[int, _Channel]
    next_channel_cleanup: float = 0.0

    def __init__(self, application: Any, adj: Adjustments, fd_limit: int) -> None:
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        self.stats = ServingStats(connection_limit=adj.connection_limit, fd_limit=fd_limit)
        self.draining = False
        self._closed = False
        self._shedding: set[_Channel] = set()
        self._accept_paused_until = 0.0
        self._accept_error_logged_at = 0.0
        # A tenth of the limit: small enough that few idle clients lose their connection, big
        # enough that a flood pays the idle scan once per batch of accepts.
        self._shed_batch = max(1, adj.connection_limit // 10)
        super().__init__(
            application, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0]
        )

    @property
    def open_connections(self) -> int:
        return len(self.active_channels)

    # -- accepting (loop thread) ------------------------------------------------------------

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting) and time.monotonic() >= self._accept_paused_until

    def handle_accept(self) -> None:
        # waitress accepts one connection per loop pass, and a pass costs time in proportion to
        # the open connections: taking a batch keeps a burst of thousands from being quadratic.
        for _ in range(ACCEPT_BATCH):
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one pending connection; False when there is none (or accepting must pause)."""
        try:
            accepted = self.accept()
        except OSError as exc:
            self._accept_failed(exc)
            return False
        if accepted is None:
            return False
        conn, addr = accepted
        try:
            self.set_socket_options(conn)
        except OSError:  # the caller already hung up
            conn.close()
            return True
        if self._at_limit() and self._shed(self._shed_batch) == 0:
            self.stats.refused_busy += 1
            conn.close()
            return True
        self.stats.accepted += 1
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
        return True

    def _at_limit(self) -> bool:
        # Channels marked for shedding close on the loop's next pass; do not count them twice.
        self._shedding = {ch for ch in self._shedding if ch._fileno is not None}
        limit: int = self.adj.connection_limit  # waitress is untyped: Any to mypy
        return len(self.active_channels) - len(self._shedding) >= limit

    def _shed(self, count: int) -> int:
        """Mark up to ``count`` longest-idle connections without work for closing."""
        idle = (ch for ch in self.active_channels.values() if not ch.has_work())
        victims = heapq.nsmallest(count, idle, key=lambda ch: ch.last_activity)
        for channel in victims:
            channel.will_close = True  # closed by its next write event, as waitress's timeouts
            self._shedding.add(channel)
        self.stats.shed_idle += len(victims)
        if victims:
            log.info(
                "connection limit %d reached: closing %d idle connections",
                self.adj.connection_limit,
                len(victims),
            )
        return len(victims)

    def _accept_failed(self, exc: OSError) -> None:
        self.stats.accept_errors += 1
        if exc.errno in _OUT_OF_DESCRIPTORS:
            self._shed(self._shed_batch)
            self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
        now = time.monotonic()
        if now - self._accept_error_logged_at >= ACCEPT_ERRORS_LOGGED_EVERY_S:
            self._accept_error_logged_at = now
            log.warning(
                "accept failed (%s); %d open connections, %d accept errors so far",
                exc,
                self.open_connections,
                self.stats.accept_errors,
            )

    # -- running and stopping (main thread) -------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (their handlers raise SystemExit), then shut down."""
        timeout = self.adj.asyncore_loop_timeout
        try:
            while self._map:
                self.poll_once(timeout)
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            self.shutdown()

    def poll_once(self, timeout: float) -> None:
        """One pass of the loop: ``select()`` while every descriptor fits in it, ``poll()`` once
        one does not. select() cannot watch a descriptor >= FD_SETSIZE (the ~1,010-connection
        crash), but with few connections waitress's select pass is the cheaper one: a run of
        sequential keep-alive registrations took 27.6 s on poll() and 19.7 s on select() (20,000
        instances, ``bench/run.py --instances 20000``; 17.5 s before any of this)."""
        if max(self._map, default=0) < FD_SETSIZE:
            wasyncore.poll(timeout, self._map)
        else:
            wasyncore.poll2(timeout, self._map)

    def shutdown(self, drain_s: float = DRAIN_S) -> None:
        """Refuse new connections, let requests in progress finish (bounded), close the rest."""
        if self._closed:
            return
        self._closed = True
        self.draining = True
        self.accepting = False
        wasyncore.dispatcher.close(self)  # the listener: callers are refused from now on
        deadline = time.monotonic() + drain_s
        try:
            while time.monotonic() < deadline:
                for channel in list(self.active_channels.values()):
                    if not channel.has_work():
                        channel.handle_close()
                if not self.active_channels:
                    break
                wasyncore.poll2(0.05, self._map)
        except (SystemExit, KeyboardInterrupt):
            pass  # a second signal: skip the rest of the drain
        except Exception:  # the loop itself failed (that error is already on its way up)
            log.exception("HTTP drain failed; closing every connection")
        finally:
            for channel in list(self.active_channels.values()):
                channel.handle_close()
            self.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
            self.trigger.close()

    def close(self) -> None:
        self.shutdown(drain_s=0)


_current: NamingServer | None = None


def status() -> dict[str, int] | None:
    """The serving counters for operator/metrics (None when no server runs in this process)."""
    server = _current
    if server is None:
        return None
    return {"openConnections": server.open_connections, **_camel(asdict(server.stats))}


def _camel(values: dict[str, int]) -> dict[str, int]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(k): v for k, v in values.items()}


def make_server(
    host: str, port: int, threads: int, connection_limit: int, fd_limit: int
) -> NamingServer:
    """The node's server; ``connection_limit`` is bounded by ``fd_limit`` here."""
    global _current
    # Imported here, not at the top: it builds the Django application (and imports every
    # view) as a side effect, which only a serving process should pay for.
    from server.wsgi import application

    limit = bounded_connection_limit(connection_limit, fd_limit)
    if limit < connection_limit:
        log.warning(
            "HTTP connection limit lowered from %d to %d (descriptor limit %d)",
            connection_limit,
            limit,
            fd_limit,
        )
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident="nacos-py",
        backlog=2048,
        connection_limit=limit,
        channel_timeout=120,
        asyncore_use_poll=True,
        # Nacos clients send everything in the query string; keep headers and bodies bounded.
        max_request_header_size=64 * 1024,
        max_request_body_size=8 * 1024 * 1024,
        clear_untrusted_proxy_headers=True,
    )
    server = NamingServer(application, adj, fd_limit)
    _current = server
    return server
