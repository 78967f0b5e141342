"""Held fetches and event streams on the HTTP server's event loop: the dispatcher.

An edge answers "wait for a change" (:class:`lib.watching.Held`) or "stream the changes"
(:class:`lib.watching.EventStream`); this module carries both out on the server's one loop, with
no thread per waiting client, over the node's change feed (``naming.feed``):

- **One sink, coalesced.** The feed tells :meth:`Watchers.on_feed` (notifier thread) that it
  appended. With nobody waiting or streaming that is one attribute read and a return, so the
  write paths pay nothing for this feature. Otherwise it schedules one pull on the loop
  (``call_soon_threadsafe``), unless one is already scheduled: a burst of changes costs one
  wake-up of the loop.
- **The pull** reads ``feed.since(last)`` on the loop, offers each change to the streams of its
  topics (streams are indexed by topic: the edge names a stream's topic and the topics of a
  change, e.g. its service, its group and its namespace; each stream also says whether its
  scope matches) and wakes the held requests of its service. Each change is framed once per
  framing function (once per edge), however many streams send it, and each stream gets one
  write per pull.
- **Positions.** Every waiter and stream carries the feed index its answer reflects
  (``after``); it is sent only later changes, so a pull from an older position (another
  stream's) never repeats one. A new waiter moves the dispatcher's position back to its own,
  and pulls at once if the feed is already past it: a change made between the edge's read and
  the registration is not missed even though the sink ignored it while nobody was watching.
- **A stream that falls behind** is closed rather than buffered without bound: its client does
  not read (the transport's write buffer is over :data:`STREAM_BUFFER_BYTES`), or the feed
  trimmed changes it had not been sent yet. Its client reconnects with ``Last-Event-ID``.

Held and streaming connections count as busy: the idle timeout and the shedding at the
connection limit never pick them. On shutdown held requests are answered at once (their final
judgement: 304 or the new list) and streams end with the last chunk.

Threads: everything here runs on the server's loop, except :meth:`Watchers.on_feed`, which only
schedules. The keep-alive timer is a loop timer, stopped by :meth:`Watchers.shutdown`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lib.watching import EventStream, Held
from naming.feed import ChangeFeed, FeedEvent

if TYPE_CHECKING:  # the server hands itself in; it imports this module
    from server.serving import HttpConnection, NamingServer, Rendered, _Request

log = logging.getLogger("server.watching")

# A stream whose unsent bytes pass this (plus its first batch) is closed: its client stopped
# reading, and holding every later change for it would grow without bound.
STREAM_BUFFER_BYTES = 256 * 1024
# Changes dispatched per pull; more are pulled in the next loop iteration, so a burst of
# thousands never holds the loop for long.
PULL_LIMIT = 2_000
KEEPALIVE = b": keep-alive\n\n"


@dataclass
class WatchStats:
    """Written by the loop thread only; read (whole ints) by the metrics view."""

    held_total: int = 0  # requests that waited
    held_woken: int = 0  # answered with a change before their wait ended
    held_timed_out: int = 0  # answered at the end of their wait
    held_rechecked: int = 0  # woken by a change of their service that their answer did not show
    held_cancelled: int = 0  # their client left first
    streams_opened: int = 0
    streams_refused: int = 0  # over the cap on open streams (503)
    streams_closed_slow: int = 0  # their client did not read
    streams_closed_lagging: int = 0  # the feed trimmed changes they had not been sent
    streams_closed_by_client: int = 0
    events_sent: int = 0  # changes written to streams (one per stream)
    keepalives_sent: int = 0
    pulls: int = 0  # loop wake-ups for new changes (one per burst)
    pulled_events: int = 0
    frame_errors: int = 0  # changes that could not be written as an event: their streams closed


class Waiter:
    __slots__ = ("connection", "done", "held", "request", "timer")

    def __init__(self, connection: HttpConnection, request: _Request, held: Held[Rendered]) -> None:
        self.connection = connection
        self.request = request
        self.held = held
        self.timer: asyncio.TimerHandle | None = None
        self.done = False


class Stream:
    __slots__ = (
        "after",
        "bound",
        "chunked",
        "connection",
        "done",
        "last_write",
        "pending",
        "spec",
    )

    def __init__(
        self, connection: HttpConnection, spec: EventStream[FeedEvent], chunked: bool
    ) -> None:
        self.connection = connection
        self.spec = spec
        self.after = spec.after
        self.chunked = chunked
        self.pending: list[bytes] = []
        self.last_write = time.monotonic()
        self.bound = STREAM_BUFFER_BYTES + len(spec.first)
        self.done = False


def _discard(index: dict[Any, set[Any]], key: Hashable, item: object) -> None:
    """Take ``item`` out of ``index[key]``, and the key with its last item."""
    found = index.get(key)
    if found is not None:
        found.discard(item)
        if not found:
            del index[key]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Watchers:
    """The held requests and open streams of one server (one loop)."""

    def __init__(
        self,
        server: NamingServer,
        feed: ChangeFeed | None,
        keepalive_s: float,
        max_streams: int,
    ) -> None:
        self.server = server
        self.feed = feed
        self.keepalive_s = keepalive_s
        self.max_streams = max_streams
        self.stats = WatchStats()
        self.held: dict[Hashable, set[Waiter]] = {}
        self.held_count = 0
        self.streams: dict[Hashable, set[Stream]] = {}  # by topic
        # The edges' topic functions in use, with how many open streams use each (normally one).
        self._topic_fns: dict[Callable[[FeedEvent], Iterable[Hashable]], int] = {}
        self.stream_count = 0
        self.last = 0  # the feed index pulled up to
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._closed = False

    # -- wiring ------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.feed is not None:
            self.feed.sinks.add("http-watchers", self.on_feed)
        self._keepalive = loop.call_later(self._sweep_every(), self._sweep)

    def _sweep_every(self) -> float:
        return max(0.05, self.keepalive_s / 4)

    @property
    def watching(self) -> bool:
        return bool(self.held_count or self.stream_count)

    # -- the feed's side (notifier thread) --------------------------------------------------

    def on_feed(self, last_index: int) -> None:
        """Told after every append: with nobody watching, nothing to do."""
        if not (self.held_count or self.stream_count) or self._scheduled:
            return
        loop = self._loop
        if loop is None or self._closed:
            return
        self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._pull)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            self._scheduled = False

    # -- registering (loop thread) ----------------------------------------------------------

    def _follow(self, after: int) -> None:
        """A new waiter or stream at ``after``: pull from there (and now, if already behind)."""
        self.last = after if not self.watching else min(self.last, after)
        feed = self.feed
        if feed is not None and feed.last_index > self.last and not self._scheduled:
            self._scheduled = True
            self.server._loop_now().call_soon(self._pull)

    @staticmethod
    def _left(connection: HttpConnection) -> bool:
        """The client left while its request was judged (a reset, or a close: see
        ``HttpConnection.eof_received``): nobody is there to wait or stream for."""
        transport = connection.transport
        if transport is None or transport.is_closing() or connection.eof:
            connection.busy = False
            connection.close()
            return True
        return False

    def hold(self, connection: HttpConnection, request: _Request, held: Held[Rendered]) -> None:
        connection.busy = True
        if self._left(connection):
            self.stats.held_cancelled += 1
            return
        if self.feed is None or self._closed or self.server.draining:
            self._answer(connection, request, held, final=True)
            return
        waiter = Waiter(connection, request, held)
        self._follow(held.after)
        self.held.setdefault(held.key, set()).add(waiter)
        self.held_count += 1
        self.stats.held_total += 1
        connection.watch = waiter
        waiter.timer = self.server._loop_now().call_later(held.wait_s, self._expire, waiter)

    def stream(
        self, connection: HttpConnection, request: _Request, spec: EventStream[FeedEvent]
    ) -> None:
        server = self.server
        connection.busy = True
        transport = connection.transport
        if self._left(connection) or transport is None:
            return
        if self.feed is None or self._closed or server.draining:
            connection.finish(request, self._unavailable(request, "server is shutting down"))
            return
        if self.stream_count >= self.max_streams:
            self.stats.streams_refused += 1
            reason = f"too many event streams open ({self.max_streams}), please try again later!"
            connection.finish(request, self._unavailable(request, reason))
            return
        # Chunked on HTTP/1.1 (a clean end is told from a cut), delimited by the close on 1.0.
        chunked = request.version == "1.1"
        stream = Stream(connection, spec, chunked)
        head = [*spec.headers, ("Cache-Control", "no-cache")]
        if chunked:
            head.append(("Transfer-Encoding", "chunked"))
        transport.write(server.stream_head(head))
        self._follow(spec.after)
        self.streams.setdefault(spec.topic, set()).add(stream)
        self._topic_fns[spec.topics] = self._topic_fns.get(spec.topics, 0) + 1
        self.stream_count += 1
        self.stats.streams_opened += 1
        connection.watch = stream
        self._write(stream, spec.first)

    def _unavailable(self, request: _Request, reason: str) -> bytes:
        return self.server._render(
            request,
            "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=UTF-8")],
            reason.encode(),
        )

    # -- leaving -----------------------------------------------------------------------------

    def forget(self, watch: Waiter | Stream) -> None:
        """The client left (connection lost)."""
        if watch.done:
            return
        if isinstance(watch, Waiter):
            self.stats.held_cancelled += 1
            self._unhold(watch)
        else:
            self.stats.streams_closed_by_client += 1
            self._unstream(watch)

    def _unhold(self, waiter: Waiter) -> None:
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()
        _discard(self.held, waiter.held.key, waiter)
        self.held_count -= 1
        waiter.connection.watch = None

    def _unstream(self, stream: Stream) -> None:
        stream.done = True
        _discard(self.streams, stream.spec.topic, stream)
        left = self._topic_fns.get(stream.spec.topics, 1) - 1
        if left > 0:
            self._topic_fns[stream.spec.topics] = left
        else:
            self._topic_fns.pop(stream.spec.topics, None)
        self.stream_count -= 1
        stream.connection.watch = None

    def _end(self, stream: Stream) -> None:
        """Close a stream from this side (slow, lagging, shutdown)."""
        self._unstream(stream)
        connection = stream.connection
        transport = connection.transport
        if transport is not None and not transport.is_closing() and stream.chunked:
            transport.write(b"0\r\n\r\n")
        connection.busy = False
        connection.close()

    # -- answering held requests -------------------------------------------------------------

    def _answer(
        self, connection: HttpConnection, request: _Request, held: Held[Rendered], final: bool
    ) -> bool:
        """Judge again; write the answer if there is one. False: still unchanged, keep waiting."""
        try:
            answer = held.again(final)
        except Exception:
            connection.finish(request, self.server._failed(request, "judging a held request"))
            return True
        if answer is None:
            return False
        connection.finish(request, self.server._render(request, *answer))
        return True

    def _expire(self, waiter: Waiter) -> None:
        if waiter.done:
            return
        self._unhold(waiter)
        self.stats.held_timed_out += 1
        self._answer(waiter.connection, waiter.request, waiter.held, final=True)

    def _wake(self, waiter: Waiter) -> None:
        if waiter.done:
            return
        if self._answer(waiter.connection, waiter.request, waiter.held, final=False):
            self._unhold(waiter)
            self.stats.held_woken += 1
        else:
            self.stats.held_rechecked += 1
            waiter.held.after = self.last

    # -- dispatching (loop thread) -----------------------------------------------------------

    def _pull(self) -> None:
        self._scheduled = False
        feed = self.feed
        if feed is None or not self.watching:
            return
        events = feed.since(self.last, PULL_LIMIT)
        self.stats.pulls += 1
        if not events:
            return
        self.stats.pulled_events += len(events)
        first = events[0].index
        woken: set[Waiter] = set()
        if first > self.last + 1:
            self._lost(first - 1, woken)
        touched: set[Stream] = set()
        broken: set[Stream] = set()
        by_topic, held, topic_fns = self.streams, self.held, list(self._topic_fns)
        for event in events:
            service = event.service
            if held:
                waiters = held.get(service)
                if waiters:
                    woken.update(w for w in waiters if event.index > w.held.after)
            framer: Callable[[FeedEvent], bytes] | None = None
            framed: bytes | None = b""
            for topics_of in topic_fns:
                for topic in topics_of(event):
                    streams = by_topic.get(topic)
                    if not streams:
                        continue
                    for stream in streams:
                        if event.index <= stream.after or not stream.spec.matches(event):
                            continue
                        if broken and stream in broken:
                            continue  # closed below: nothing more is framed for it
                        if stream.spec.frame is not framer:
                            framer = stream.spec.frame
                            framed = self._frame(framer, event)
                        if framed is None:
                            broken.add(stream)
                            continue
                        stream.pending.append(framed)
                        stream.after = event.index
                        touched.add(stream)
        self.last = events[-1].index
        for stream in broken:
            # Closed rather than sent a gap: its client resumes, and starts again with
            # ``current`` if the change is still in the way.
            touched.discard(stream)
            if not stream.done:
                self._end(stream)
        for stream in touched:
            if not stream.done:
                self.stats.events_sent += len(stream.pending)
                data = b"".join(stream.pending)
                stream.pending.clear()
                self._write(stream, data)
        for waiter in woken:
            self._wake(waiter)
        if len(events) >= PULL_LIMIT and not self._scheduled:
            self._scheduled = True
            self.server._loop_now().call_soon(self._pull)

    def _frame(self, framer: Callable[[FeedEvent], bytes], event: FeedEvent) -> bytes | None:
        """The event as a stream writes it, or None when it cannot be written: counted and
        logged, so one bad change cannot raise out of the pull and stall every stream behind
        it (the feed index would never advance past it)."""
        try:
            return framer(event)
        except Exception:
            self.stats.frame_errors += 1
            log.exception("a change to %s could not be framed as an event", event.service)
            return None

    def _lost(self, before: int, woken: set[Waiter]) -> None:
        """The feed trimmed changes up to ``before`` that some were not sent: those streams
        close (their clients resume, and start over); every waiter judges again."""
        for streams in list(self.streams.values()):
            for stream in [s for s in streams if s.after < before]:
                self.stats.streams_closed_lagging += 1
                self._end(stream)
        for waiters in self.held.values():
            woken.update(waiters)

    def _write(self, stream: Stream, data: bytes) -> None:
        transport = stream.connection.transport
        if transport is None or transport.is_closing():
            return
        if data:
            transport.write(_chunk(data) if stream.chunked else data)
            stream.last_write = time.monotonic()
        if transport.get_write_buffer_size() > stream.bound:
            log.info("event stream to %s closed: its client does not read", stream.connection.peer)
            self.stats.streams_closed_slow += 1
            self._end(stream)

    def _sweep(self) -> None:
        """Keep-alive comments on streams idle for ``keepalive_s``."""
        if self._closed:
            return
        horizon = time.monotonic() - self.keepalive_s
        for streams in list(self.streams.values()):
            for stream in [s for s in streams if s.last_write <= horizon]:
                self.stats.keepalives_sent += 1
                self._write(stream, KEEPALIVE)
        self._keepalive = self.server._loop_now().call_later(self._sweep_every(), self._sweep)

    # -- stopping ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Held requests answer now; streams end. Called by the server's drain."""
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        for waiters in list(self.held.values()):
            for waiter in list(waiters):
                self._unhold(waiter)
                self._answer(waiter.connection, waiter.request, waiter.held, final=True)
        for streams in list(self.streams.values()):
            for stream in list(streams):
                self._end(stream)

    def status(self) -> dict[str, Any]:
        """Snake-case keys (``server.serving.status`` turns them into the metrics' camelCase)."""
        return {
            "held_now": self.held_count,
            "streams_open": self.stream_count,
            "max_streams": self.max_streams,
            "keepalive_seconds": self.keepalive_s,
            "position": self.last,
            **asdict(self.stats),
        }
