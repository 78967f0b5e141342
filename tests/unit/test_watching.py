"""The server's dispatcher for held requests and event streams (server/watching.py), over a real
change feed and an asyncio loop, with connections replaced by recorders: one pull per burst,
nothing scheduled while nobody watches, wake-ups by service, the end of a wait, slow and
lagging streams, keep-alives, the cap and shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from lib.watching import EventStream, Held
from naming.codec import instance_set
from naming.domain import Instance, ServiceName
from naming.feed import ChangeFeed, FeedEvent
from naming.registry import ServiceView
from server.serving import HttpConnection, NamingServer, Rendered, _Request
from server.watching import KEEPALIVE, STREAM_BUFFER_BYTES, Watchers

A = ServiceName("public", "DEFAULT_GROUP@@a")
B = ServiceName("public", "DEFAULT_GROUP@@b")
ELSEWHERE = ServiceName("other", "DEFAULT_GROUP@@a")


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.buffered = 0  # what a client that does not read leaves in the buffer

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Connection:
    def __init__(self) -> None:
        self.transport = Transport()
        self.busy = False
        self.eof = False  # the client closed its side
        self.watch: Any = None
        self.peer = ("127.0.0.1", 1)
        self.answers: list[bytes] = []

    def finish(self, request: _Request, response: bytes) -> None:
        self.busy = False
        self.answers.append(response)

    def close(self) -> None:
        self.transport.close()


class Server:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.draining = False

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def _render(self, request: _Request, status: str, headers: Any, body: bytes) -> bytes:
        return f"{status}|".encode() + body

    def _failed(self, request: _Request, what: str) -> bytes:
        return b"500"

    def stream_head(self, headers: list[tuple[str, str]]) -> bytes:
        return b"HEAD"


class Views:
    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.revision = 0

    def change(self, name: ServiceName, *ips: str) -> None:
        self.revision += 1
        instances = [Instance(ip, 80, registered_ms=i) for i, ip in enumerate(ips)]
        self.feed.on_view(ServiceView(name, None, instance_set(instances), None, self.revision))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def settle(loop: asyncio.AbstractEventLoop, seconds: float = 0.0) -> None:
    """Run the loop a while, on a thread of its own: on an xdist worker that ran the browser
    tests, playwright keeps a loop running on the test thread, where no other loop may run. The
    test thread touches the dispatcher only while this loop is stopped."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(asyncio.sleep(seconds))
            loop.run_until_complete(asyncio.sleep(0))
        except BaseException as exc:  # handed to the test thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="settle")
    thread.start()
    thread.join(seconds + 30)
    assert not thread.is_alive(), "the loop did not settle"
    if failed:
        raise failed[0]


def make(
    loop: asyncio.AbstractEventLoop, feed: ChangeFeed | None = None, **kwargs: Any
) -> Watchers:
    options = {"keepalive_s": 60.0, "max_streams": 10, **kwargs}
    watchers = Watchers(cast(NamingServer, Server(loop)), feed or ChangeFeed(), **options)
    watchers.start(loop)
    return watchers


def request() -> _Request:
    return _Request()


def held(key: ServiceName, after: int, wait_s: float, judge: Callable[[bool], Rendered | None]):
    return Held(key, after, wait_s, judge)


def spec(after: int, namespace: str = "public") -> EventStream[FeedEvent]:
    return EventStream(
        [("Content-Type", "text/event-stream")],
        b"first;",
        after,
        namespace,
        lambda e: (e.service.namespace,),
        lambda e: e.service.namespace == namespace,
        lambda e: f"{e.kind.value}{e.scope}:{e.instance.ip if e.instance else '-'};".encode(),
    )


def as_conn(connection: Connection) -> HttpConnection:
    return cast(HttpConnection, connection)


def sent(connection: Connection) -> bytes:
    """The stream's bytes without the chunk framing."""
    out = b""
    for data in connection.transport.written[1:]:
        size, _, rest = data.partition(b"\r\n")
        out += rest[: int(size, 16)]
    return out


def test_nothing_is_scheduled_while_nobody_watches(loop: asyncio.AbstractEventLoop) -> None:
    feed = ChangeFeed()
    watchers = make(loop, feed)
    Views(feed).change(A, "10.0.0.1")
    assert not watchers._scheduled and watchers.stats.pulls == 0


def test_a_burst_is_one_pull_and_one_write_per_stream(loop: asyncio.AbstractEventLoop) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    connection = Connection()
    r = request()
    r.version = "1.1"
    watchers.stream(as_conn(connection), r, spec(feed.last_index))
    for n in range(1, 6):
        views.change(A, *[f"10.0.0.{i}" for i in range(1, n + 1)])
    settle(loop)
    # 5 ups; the leader of the service ("") and of its cluster (DEFAULT)
    assert watchers.stats.pulls == 1 and watchers.stats.events_sent == 7
    assert len(connection.transport.written) == 3  # head, first batch, one write for the burst
    assert sent(connection) == (
        b"first;up:10.0.0.1;leader:10.0.0.1;leaderDEFAULT:10.0.0.1;"
        b"up:10.0.0.2;up:10.0.0.3;up:10.0.0.4;up:10.0.0.5;"
    )
    assert connection.busy and watchers.stream_count == 1


def test_streams_see_only_their_namespace_and_only_after_their_position(
    loop: asyncio.AbstractEventLoop,
) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    views.change(A, "10.0.0.1")
    here, there = Connection(), Connection()
    watchers.stream(as_conn(here), request(), spec(feed.last_index))
    watchers.stream(as_conn(there), request(), spec(0, "other"))
    views.change(ELSEWHERE, "10.9.0.1")
    views.change(B, "10.0.0.2")
    settle(loop)
    assert sent(here) == b"first;up:10.0.0.2;leader:10.0.0.2;leaderDEFAULT:10.0.0.2;"
    assert sent(there) == b"first;up:10.9.0.1;leader:10.9.0.1;leaderDEFAULT:10.9.0.1;"


def test_a_change_between_the_read_and_the_hold_is_not_missed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    after = feed.last_index  # the edge read its view here...
    views.change(A, "10.0.0.1")  # ...the change came before the hold (the sink ignored it)
    connection = Connection()
    watchers.hold(
        as_conn(connection), request(), held(A, after, 30, lambda final: ("200", [], b"new"))
    )
    settle(loop)
    assert connection.answers == [b"200|new"] and watchers.stats.held_woken == 1


def test_held_requests_wake_by_service_and_end_with_their_wait(
    loop: asyncio.AbstractEventLoop,
) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    changed = {"a": False}

    def judge(final: bool) -> Rendered | None:
        if changed["a"]:
            return ("200", [], b"new")
        return ("304", [], b"") if final else None

    on_a, on_b = Connection(), Connection()
    watchers.hold(as_conn(on_a), request(), held(A, feed.last_index, 30, judge))
    watchers.hold(as_conn(on_b), request(), held(B, feed.last_index, 0.2, judge))
    assert watchers.held_count == 2 and on_a.busy and on_b.busy
    views.change(B, "10.0.0.9")  # B's judge says unchanged: it waits on
    settle(loop)
    assert on_b.answers == [] and watchers.stats.held_rechecked == 1
    changed["a"] = True
    views.change(A, "10.0.0.1")
    settle(loop)
    assert on_a.answers == [b"200|new"]
    settle(loop, 0.3)
    assert on_b.answers == [b"200|new"]  # judged at the end (final)
    assert (watchers.stats.held_woken, watchers.stats.held_timed_out) == (1, 1)
    assert watchers.held_count == 0 and watchers.held == {}


def test_a_client_that_leaves_is_forgotten(loop: asyncio.AbstractEventLoop) -> None:
    feed = ChangeFeed()
    watchers = make(loop, feed)
    waiting, streaming = Connection(), Connection()
    watchers.hold(as_conn(waiting), request(), held(A, 0, 30, lambda final: None))
    watchers.stream(as_conn(streaming), request(), spec(0))
    watchers.forget(waiting.watch)
    watchers.forget(streaming.watch)
    assert watchers.held_count == 0 and watchers.stream_count == 0
    assert (watchers.stats.held_cancelled, watchers.stats.streams_closed_by_client) == (1, 1)
    assert not watchers.watching


def test_a_client_that_left_while_its_request_was_judged_is_not_waited_for(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Its reset (connection lost) or close (EOF) came before the answer said "wait": nothing is
    held or streamed for it, and its connection is closed."""
    watchers = make(loop, ChangeFeed())
    reset, closed, gone_stream = Connection(), Connection(), Connection()
    reset.transport.closed = True
    closed.eof = True
    gone_stream.eof = True
    watchers.hold(as_conn(reset), request(), held(A, 0, 30, lambda final: None))
    watchers.hold(as_conn(closed), request(), held(A, 0, 30, lambda final: None))
    watchers.stream(as_conn(gone_stream), request(), spec(0))
    assert watchers.held_count == 0 and watchers.stream_count == 0 and not watchers.watching
    assert watchers.stats.held_cancelled == 2 and watchers.stats.streams_opened == 0
    for connection in (reset, closed, gone_stream):
        assert connection.transport.closed and not connection.busy
        assert connection.transport.written == [] and connection.watch is None


def test_a_stream_whose_client_does_not_read_is_closed(loop: asyncio.AbstractEventLoop) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    connection = Connection()
    r = request()
    watchers.stream(as_conn(connection), r, spec(0))
    connection.transport.buffered = STREAM_BUFFER_BYTES + 100
    views.change(A, "10.0.0.1")
    settle(loop)
    assert connection.transport.closed and watchers.stats.streams_closed_slow == 1
    assert connection.transport.written[-1] == b"0\r\n\r\n"  # the last chunk: a clean end
    assert watchers.stream_count == 0


def test_a_stream_the_feed_left_behind_is_closed(loop: asyncio.AbstractEventLoop) -> None:
    feed = ChangeFeed(max_events=3)
    views = Views(feed)
    watchers = make(loop, feed)
    connection = Connection()
    watchers.stream(as_conn(connection), request(), spec(0))
    for n in range(1, 5):  # 4 ups and a leader: more than the feed keeps, before any pull
        views.change(A, *[f"10.0.0.{i}" for i in range(1, n + 1)])
    settle(loop)
    assert connection.transport.closed and watchers.stats.streams_closed_lagging == 1


def test_idle_streams_get_keepalives(loop: asyncio.AbstractEventLoop) -> None:
    watchers = make(loop, keepalive_s=0.1)
    connection = Connection()
    watchers.stream(as_conn(connection), request(), spec(0))
    settle(loop, 0.35)
    assert sent(connection).startswith(b"first;" + KEEPALIVE + KEEPALIVE)
    assert watchers.stats.keepalives_sent >= 2


def test_the_cap_on_streams_answers_503(loop: asyncio.AbstractEventLoop) -> None:
    watchers = make(loop, max_streams=1)
    first, second = Connection(), Connection()
    watchers.stream(as_conn(first), request(), spec(0))
    watchers.stream(as_conn(second), request(), spec(0))
    assert second.answers and second.answers[0].startswith(b"503 Service Unavailable|too many")
    assert watchers.stats.streams_refused == 1 and watchers.stream_count == 1


def test_shutdown_answers_held_requests_and_ends_streams(loop: asyncio.AbstractEventLoop) -> None:
    watchers = make(loop)
    waiting, streaming = Connection(), Connection()
    finals: list[bool] = []

    def judge(final: bool) -> Rendered | None:
        finals.append(final)
        return ("304", [], b"") if final else None

    watchers.hold(as_conn(waiting), request(), held(A, 0, 30, judge))
    watchers.stream(as_conn(streaming), request(), spec(0))
    watchers.shutdown()
    assert waiting.answers == [b"304|"] and finals == [True]
    assert streaming.transport.closed
    late = Connection()
    watchers.hold(as_conn(late), request(), held(A, 0, 30, judge))
    assert late.answers == [b"304|"]  # a request held after the drain began answers at once


def test_a_change_is_offered_only_to_the_streams_of_its_topics(
    loop: asyncio.AbstractEventLoop,
) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed, max_streams=100)
    asked: list[str] = []

    def by_service(name: ServiceName) -> EventStream[FeedEvent]:
        def matches(event: FeedEvent) -> bool:
            asked.append(name.grouped)
            return event.service == name

        return EventStream(
            [("Content-Type", "text/event-stream")],
            b"",
            feed.last_index,
            name,
            lambda e: (e.service,),
            matches,
            lambda e: f"{e.service.grouped};".encode(),
        )

    followers = {}
    for n in range(20):
        name = ServiceName("public", f"DEFAULT_GROUP@@s{n}")
        followers[name] = Connection()
        watchers.stream(as_conn(followers[name]), request(), by_service(name))
    changed = ServiceName("public", "DEFAULT_GROUP@@s7")
    views.change(changed, "10.0.0.1")
    settle(loop)
    assert set(asked) == {"DEFAULT_GROUP@@s7"}  # the 19 other streams were never asked
    assert b"DEFAULT_GROUP@@s7;" in b"".join(followers[changed].transport.written)
    assert all(
        b"@@s7;" not in b"".join(c.transport.written) for n, c in followers.items() if n != changed
    )


def test_a_change_that_cannot_be_framed_closes_its_streams_and_the_rest_go_on(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    feed = ChangeFeed()
    views = Views(feed)
    watchers = make(loop, feed)
    fine, broken = Connection(), Connection()
    watchers.stream(as_conn(fine), request(), spec(feed.last_index))
    good = spec(feed.last_index)

    def frame(event: FeedEvent) -> bytes:
        if event.instance is not None and event.instance.ip == "10.0.0.2":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return good.frame(event)

    failing = EventStream(
        good.headers, good.first, good.after, good.topic, good.topics, good.matches, frame
    )
    watchers.stream(as_conn(broken), request(), failing)
    views.change(A, "10.0.0.1")
    views.change(A, "10.0.0.1", "10.0.0.2")
    views.change(A, "10.0.0.1", "10.0.0.2", "10.0.0.3")
    settle(loop)
    assert watchers.stats.frame_errors == 1 and "could not be framed" in caplog.text
    assert broken.transport.closed and watchers.stream_count == 1
    assert b"up:10.0.0.2;up:10.0.0.3;" in sent(fine)
    assert watchers.last == feed.last_index  # the pull went past the change
