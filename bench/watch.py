"""``python3 dev.py bench-watch`` (issue #13): what watching changes costs a node.

One node, auth off (``NAMING_AUTH_ENABLED=false``: the streams and lists take the same path
either way apart from the token check), beat expiry off (``NAMING_SWEEP_ENABLED=false``: nothing
beats the fixtures, and an expiry would be a change the bench did not make).

1. **Streams under change load.** ``--services`` services (group ``BENCH_WATCH``) of
   ``--per-service`` ephemeral instances each; ``--streams`` open event streams
   (``GET /nacos/v1/ns/events``), ``--group-streams`` of them on the whole group and the rest
   spread evenly over the services, held by ``--readers`` generator processes with one raw
   asyncio protocol per stream (no thread, no task: the protocol splits the SSE lines itself).
   Then a writer process applies ``--rate`` changes per second for ``--duration`` seconds through
   the v1 HTTP API (``PUT /nacos/v1/ns/instance``: weight and ``metadata={"seq": "<n>"}`` of one
   instance, services in turn, over ``--writer-connections`` keep-alive connections), and every
   stream records when each ``seq`` arrived. Delivery latency from the change's send and from
   its HTTP answer (CLOCK_MONOTONIC is one clock for every process): p50/p99/max over every
   (stream, change) pair; events received against expected per stream (missing, duplicated, out
   of order). The node's CPU (% of one core, per second, /proc) and RSS: before the streams,
   with the streams open and idle, under the change load; memory per stream. The generators'
   own CPU and event-loop lag are reported too, to show whether they (not the node) bound the
   latency. ``--profile DIR``: py-spy on the node for 10 s of the load (raw folded stacks).
2. **Watching one service, three ways.** A fresh node, one service of ``--lp-instances``
   instances, ``--consumers`` consumers of it in one generator process, a change every
   ``--change-every`` seconds, for ``--window`` seconds per way: (a) ``poll``: the full list
   every ``--poll-every`` s (keep-alive, spread evenly: the cheapest polling there is);
   (b) ``longpoll``: ``instance/list`` with ``If-None-Match`` and ``wait=30000``, again at once
   after each answer; (c) ``stream``: one event stream each. Per way: the node's CPU over the
   window, HTTP bytes (requests and answers, headers included) per consumer per minute, and the
   staleness (from the change's send to the consumer holding it): median and max.

``--quick`` shrinks both (about two minutes). Results: ``bench/results/watch.json``. Every
process started here is stopped by its PID in ``finally``; every wait is bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder leads sys.path and bench/grpc.py would shadow the grpc
# package that bench.grpc imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from array import array  # noqa: E402
from collections.abc import Awaitable, Callable, Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, cast  # noqa: E402

import uvloop  # noqa: E402

from bench.grpc import (  # noqa: E402
    Child,
    cpu_pct,
    cpu_seconds_of,
    percentile,
    rss_kb,
    sample_cpu,
    summarize_ms,
)
from lib.limits import raise_fd_limit  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "watch.json"
GROUP = "BENCH_WATCH"
LP_SERVICE = "watch-lp"
P99_TARGET_MS = 50.0
# Histogram buckets of latencies, in tenths of a millisecond (mergeable across processes).
BUCKETS_PER_MS = 10
LIST_PATH = "/nacos/v1/ns/instance/list"
EVENTS_PATH = "/nacos/v1/ns/events"
INSTANCE_PATH = "/nacos/v1/ns/instance"


# -- pure parts (tests/unit/test_bench_watch.py) -----------------------------------------------


def service_name(index: int) -> str:
    return f"watch-{index:03d}"


def instance_ip(service: int, instance: int) -> str:
    return f"10.{(service >> 8) & 255}.{service & 255}.{instance & 255}"


def change_target(seq: int, services: int, per_service: int) -> tuple[int, int]:
    """Which (service, instance) change ``seq`` (from 1) touches: the services in turn, and in
    each its instances in turn, so one instance changes again only after every other one did
    (a feed that coalesced two changes of one instance would show as a loss, not hide it)."""
    n = seq - 1
    return n % services, (n // services) % per_service


def stream_services(streams: int, group_streams: int, services: int) -> list[int | None]:
    """What each stream watches: ``None`` (the whole group) for the first ``group_streams``,
    then the services in turn."""
    group = min(group_streams, streams)
    return [None] * group + [i % services for i in range(streams - group)]


def http_request(method: str, path: str, params: dict[str, Any], headers: str = "") -> bytes:
    """A keep-alive HTTP/1.1 request with its parameters in the query string, as Nacos clients
    send them; ``headers`` are extra ``Name: value\\r\\n`` lines."""
    query = urllib.parse.urlencode(params)
    return (
        f"{method} {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\n\r\n"
    ).encode()


def change_request(seq: int, services: int, per_service: int) -> bytes:
    service, instance = change_target(seq, services, per_service)
    params = {
        "serviceName": service_name(service),
        "groupName": GROUP,
        "ip": instance_ip(service, instance),
        "port": 8080,
        "ephemeral": "true",
        "weight": f"{1 + seq % 10 / 10:.1f}",
        "metadata": json.dumps({"seq": str(seq)}),
    }
    return http_request("PUT", INSTANCE_PATH, params)


def register_request(service: int, instance: int, name: str = "") -> bytes:
    params = {
        "serviceName": name or service_name(service),
        "groupName": GROUP,
        "ip": instance_ip(service, instance),
        "port": 8080,
        "ephemeral": "true",
        "metadata": json.dumps({"seq": "0"}),
    }
    return http_request("POST", INSTANCE_PATH, params)


def events_request(service: str | None) -> bytes:
    params = {"namespaceId": "public", "groupName": GROUP}
    if service is not None:
        params["serviceName"] = service
    return http_request("GET", EVENTS_PATH, params, "Accept: text/event-stream\r\n")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and (lower-cased) headers of an HTTP response head, without its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


class ChunkDecoder:
    """Undoes ``Transfer-Encoding: chunked`` as bytes arrive, in any split."""

    def __init__(self) -> None:
        self.buffer = b""
        self.remaining = 0  # body bytes left in the current chunk
        self.trailer = 0  # CRLF bytes to skip after a chunk's body
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out: list[bytes] = []
        while self.buffer and not self.done:
            if self.trailer:
                skip = min(self.trailer, len(self.buffer))
                self.buffer = self.buffer[skip:]
                self.trailer -= skip
                continue
            if self.remaining:
                piece = self.buffer[: self.remaining]
                out.append(piece)
                self.buffer = self.buffer[len(piece) :]
                self.remaining -= len(piece)
                if not self.remaining:
                    self.trailer = 2
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            size = int(self.buffer[:end].split(b";")[0] or b"0", 16)
            self.buffer = self.buffer[end + 2 :]
            if size == 0:
                self.done = True
            self.remaining = size
        return b"".join(out)


def first_event(buffer: bytes) -> tuple[bytes | None, bytes]:
    """The stream's first event (``current``), once whole, and the bytes after it. An event's
    ``data`` is one line of JSON, so the first blank line ends it; the chunk framing of
    ``Transfer-Encoding: chunked`` only ever falls between whole events (the node writes whole
    events), so it needs no undoing here, nor in :func:`scan_changes`."""
    normal = buffer.replace(b"\r\n", b"\n") if b"\r" in buffer else buffer
    end = normal.find(b"\n\n")
    if end < 0:
        return None, buffer
    return normal[:end], normal[end + 2 :]


_KIND = re.compile(rb'"kind"\s*:\s*"(\w+)"')
_SEQ = re.compile(rb'"seq"\s*:\s*"(\d+)"')
# One event's feed index (its id's second half), kind and instance's seq: the data line is the
# event's one line of JSON, with "kind" first and the instance (and its metadata) after it.
_CHANGE = re.compile(
    rb'^id:\s*\w+-(\d+)\r?\ndata:\s*\{"kind"\s*:\s*"(\w+)"[^\n]*?(?:"seq"\s*:\s*"(\d+)"|$)',
    re.M,
)


def event_kind(event: bytes) -> str:
    found = _KIND.search(event)
    return found.group(1).decode() if found else ""


def scan_changes(buffer: bytes) -> tuple[list[tuple[int, bytes, int]], int, bytes]:
    """The whole events in ``buffer`` after the first: (index, kind, seq or -1) of each, how many
    keep-alive comments, and the unfinished tail to keep for the next read. A byte search, not
    a JSON decode nor a line split: the generator shares the two cores with the node, and each
    of its readers gets tens of thousands of events a second."""
    end = buffer.rfind(b"\n\n")
    if end < 0:
        return [], 0, buffer
    whole = buffer[: end + 2]
    changes = [
        (int(m.group(1)), m.group(2), int(m.group(3)) if m.group(3) else -1)
        for m in _CHANGE.finditer(whole)
    ]
    return changes, whole.count(b": keep-alive"), buffer[end + 2 :]


def max_seq(body: bytes) -> int:
    """The newest change an instance list holds: its highest ``seq`` (-1 for none)."""
    return max((int(m) for m in _SEQ.findall(body)), default=-1)


def hist_add(hist: dict[int, int], ms: float) -> None:
    bucket = math.floor(ms * BUCKETS_PER_MS)
    hist[bucket] = hist.get(bucket, 0) + 1


def hist_merge(hists: Iterable[dict[Any, int]]) -> dict[int, int]:
    """Histograms summed (keys may have become strings in JSON)."""
    out: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            out[int(k)] = out.get(int(k), 0) + v
    return out


def hist_percentile(hist: dict[int, int], p: float) -> float:
    """Nearest-rank percentile in ms, to the bucket's upper edge; NaN when empty."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, math.ceil(total * p / 100))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) / BUCKETS_PER_MS
    raise AssertionError("unreachable")


def hist_summary(hist: dict[int, int], max_ms: float) -> dict[str, float]:
    return {
        "count": sum(hist.values()),
        "p50_ms": hist_percentile(hist, 50),
        "p99_ms": hist_percentile(hist, 99),
        "max_ms": max_ms,
    }


@dataclass
class Delivery:
    """What one stream got of what it should have: expected changes never received, changes
    received twice, and arrivals older than one before them."""

    expected: int = 0
    received: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0


def delivery(
    received: Sequence[int], expected: Iterable[int], indexes: Sequence[int] = ()
) -> Delivery:
    """``received`` and ``expected`` are changes' seqs; order is judged on the feed
    ``indexes`` of what arrived (the writer's connections may apply seq n+1 before n)."""
    want = set(expected)
    got = set(received)
    return Delivery(
        expected=len(want),
        received=len(received),
        missing=len(want - got),
        duplicated=len(received) - len(got),
        out_of_order=sum(1 for a, b in itertools.pairwise(indexes) if b <= a),
    )


def staleness(
    observations: Sequence[tuple[float, int]], changes: Sequence[tuple[int, float]]
) -> tuple[list[float], int]:
    """For each change (seq, made at), how long until the consumer first held it or a later
    one. ``observations`` are (time, highest seq held) in time order, ``changes`` in seq order.
    Returns the durations and how many changes it never got."""
    out: list[float] = []
    i = 0
    best = -1
    for seq, made in changes:
        while best < seq and i < len(observations):
            best = max(best, observations[i][1])
            i += 1
        if best < seq:
            return out, len(changes) - len(out)
        out.append(observations[i - 1][0] - made)
    return out, 0


def applied_rate(record: Sequence[Sequence[float]]) -> float:
    """Changes answered 200 per second, from the first send to the last answer."""
    done = [r for r in record if r[4] == 200]
    if not done:
        return 0.0
    return len(done) / max(max(r[3] for r in done) - min(r[2] for r in done), 1e-9)


def per_minute(total: float, consumers: int, seconds: float) -> float:
    return total / max(consumers, 1) / max(seconds, 1e-9) * 60


# -- raw HTTP clients ---------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, int]:
    """One response on a keep-alive connection: status, headers, body, bytes read."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head[:-4])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoder, body, size = ChunkDecoder(), b"", len(head)
        while not decoder.done:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            size += len(data)
            body += decoder.feed(data)
        return status, headers, body, size
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body, len(head) + length


class SseStream(asyncio.Protocol):
    """One event stream, read by a protocol (no task, no thread): the head, the ``current``
    event, then every change goes to ``sink(no, arrived, index, kind, seq)``."""

    def __init__(
        self, no: int, request: bytes, sink: Callable[[int, float, int, bytes, int], None]
    ) -> None:
        self.no = no
        self.request = request
        self.sink = sink
        loop = asyncio.get_running_loop()
        self.current: asyncio.Future[float] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status = 0
        self.started = False  # the current event is in
        self.rest = b""
        self.bytes = 0
        self.keepalives = 0
        self.kinds: dict[bytes, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)
        self.bytes += len(self.request)

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.bytes += len(data)
        if self.started:  # the hot path: one call per event and stream
            changes, keepalives, self.rest = scan_changes(self.rest + data if self.rest else data)
            self.keepalives += keepalives
            kinds, sink, no = self.kinds, self.sink, self.no
            for index, kind, seq in changes:
                kinds[kind] = kinds.get(kind, 0) + 1
                sink(no, arrived, index, kind, seq)
            return
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status, _ = parse_head(self.head[:end])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self._fail(RuntimeError(f"stream answered {self.status}: {data[:200]!r}"))
                return
        first, rest = first_event(self.rest + data)
        if first is None:
            self.rest = rest
            return
        first_kind = event_kind(first)
        if first_kind != "current":
            self._fail(RuntimeError(f"the first event is {first_kind!r}, not current"))
            return
        self.started = True
        self.kinds[b"current"] = 1
        self.current.set_result(arrived)
        self.rest = b""
        if rest:
            self.data_received(rest)
            self.bytes -= len(rest)

    def _fail(self, exc: Exception) -> None:
        if not self.current.done():
            self.current.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"stream {self.no} closed"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_streams(
    host: str,
    port: int,
    requests: Sequence[bytes],
    sink: Callable[[int, float, int, bytes, int], None],
    concurrency: int = 100,
    timeout: float = 120.0,
) -> tuple[list[SseStream], int]:
    """Open every stream (``concurrency`` at a time) and wait for its ``current``; returns the
    streams that got it and how many failed."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(no: int, request: bytes) -> SseStream | None:
        nonlocal failed
        async with gate:
            try:
                _, proto = await loop.create_connection(
                    lambda: SseStream(no, request, sink), host, port
                )
                await asyncio.wait_for(proto.current, timeout)
                return proto
            except (OSError, RuntimeError, TimeoutError) as exc:
                failed += 1
                if failed <= 3:
                    print(f"stream {no} failed: {exc}", file=sys.stderr, flush=True)
                return None

    opened = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return [s for s in opened if s is not None], failed


async def stdin_lines() -> asyncio.Queue[str]:
    """The parent's commands, one a line, read on a thread of the default executor (ended by
    EOF, which the parent's ``Child.stop`` sends)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(queue.put_nowait, line.strip() if line else "")
            if not line:
                return

    loop.run_in_executor(None, pump)
    return queue


@dataclass
class LagProbe:
    """The generator's own event-loop lag: how late a 50 ms sleep wakes (a saturated
    generator would add this to every latency it measures)."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self.samples.append((now, (now - start - 0.05) * 1000))

    def summary(self, start: float, end: float) -> dict[str, float]:
        lags = [lag for t, lag in self.samples if start <= t <= end]
        return {
            "p50_ms": percentile(lags, 50),
            "p99_ms": percentile(lags, 99),
            "max_ms": max(lags, default=float("nan")),
        }


# -- phase 1 children: readers and the writer ---------------------------------------------------


def load_changes(path: str) -> list[tuple[int, int, float, float, int]]:
    """The writer's record: (seq, service, sent, answered, status) per change."""
    rows = json.loads(Path(path).read_text())
    return [(int(r[0]), int(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]


async def readers_main(spec: dict[str, Any]) -> None:
    """Hold ``spec['watch']`` streams (a service index or None each), record every change's
    arrival, and on ``report <changes file>`` say what each stream got and how late."""
    raise_fd_limit()
    seqs = array("q")
    indexes = array("q")  # the feed's: the order the node applied the changes in
    times = array("d")
    nos = array("i")

    def sink(no: int, arrived: float, index: int, kind: bytes, seq: int) -> None:
        if seq >= 0 and kind == b"update":
            nos.append(no)
            indexes.append(index)
            seqs.append(seq)
            times.append(arrived)

    watch: list[int | None] = spec["watch"]
    requests = [events_request(None if s is None else service_name(s)) for s in watch]
    started = time.monotonic()
    streams, failed = await open_streams(spec["host"], spec["port"], requests, sink)
    print(
        json.dumps(
            {"opened": len(streams), "failed": failed, "open_s": time.monotonic() - started}
        ),
        flush=True,
    )
    lag = LagProbe()
    lag_task = asyncio.ensure_future(lag.run())
    commands = await stdin_lines()
    cpu0 = cpu_seconds_of(os.getpid())
    t0 = time.monotonic()
    while True:
        command = await commands.get()
        if not command.startswith("report "):
            break
        changes = load_changes(command.split(" ", 1)[1])
        by_seq = {c[0]: c for c in changes}
        ok = [c for c in changes if c[4] == 200]
        per_stream: dict[int, list[int]] = {s.no: [] for s in streams}
        order: dict[int, list[int]] = {s.no: [] for s in streams}
        from_send: dict[int, int] = {}
        from_answer: dict[int, int] = {}
        max_send = max_answer = float("-inf")
        before_answer = unknown = 0
        for no, seq, index, arrived in zip(nos, seqs, indexes, times, strict=True):
            per_stream[no].append(seq)
            order[no].append(index)
            change = by_seq.get(seq)
            if change is None:
                unknown += 1
                continue
            send_ms = (arrived - change[2]) * 1000
            answer_ms = (arrived - change[3]) * 1000
            hist_add(from_send, send_ms)
            hist_add(from_answer, answer_ms)
            max_send, max_answer = max(max_send, send_ms), max(max_answer, answer_ms)
            before_answer += answer_ms < 0
        total = Delivery()
        worst_missing = 0
        for stream in streams:
            service = watch[stream.no]
            expected = (c[0] for c in ok if service is None or c[1] == service)
            d = delivery(per_stream[stream.no], expected, order[stream.no])
            worst_missing = max(worst_missing, d.missing)
            for name in ("expected", "received", "missing", "duplicated", "out_of_order"):
                setattr(total, name, getattr(total, name) + getattr(d, name))
        window = (min(c[2] for c in changes), max(c[3] for c in changes)) if changes else (0, 0)
        elapsed = time.monotonic() - t0
        kinds: dict[str, int] = {}
        for s in streams:
            for k, v in s.kinds.items():
                kinds[k.decode()] = kinds.get(k.decode(), 0) + v
        print(
            json.dumps(
                {
                    "streams": len(streams),
                    "still_open": sum(1 for s in streams if not s.lost.done()),
                    "delivery": total.__dict__,
                    "worst_stream_missing": worst_missing,
                    "unknown_seq": unknown,
                    "arrived_before_answer": before_answer,
                    "from_send": from_send,
                    "from_answer": from_answer,
                    "max_send_ms": max_send,
                    "max_answer_ms": max_answer,
                    "kinds": kinds,
                    "keepalives": sum(s.keepalives for s in streams),
                    "bytes": sum(s.bytes for s in streams),
                    "lag": lag.summary(*window),
                    "cpu_pct_since_open": 100
                    * (cpu_seconds_of(os.getpid()) - cpu0)
                    / max(elapsed, 1e-9),
                }
            ),
            flush=True,
        )
    lag_task.cancel()
    for s in streams:
        s.close()


async def apply_changes(
    spec: dict[str, Any],
    call: Callable[[bytes, float], Awaitable[tuple[int, float]]],
    first: int,
    seconds: float,
) -> tuple[list[list[float]], list[float]]:
    """``rate`` changes per second for ``seconds``, seqs from ``first``, each sent on time
    whatever the answers of the earlier ones (up to the connections free): (seq, service, sent,
    answered, status) per change, and how long each waited to be written (for the writer's
    turn or a free connection: a node that answers slower than ``rate`` shows here)."""
    services, per_service = spec["services"], spec["per_service"]
    record: list[list[float]] = []
    queued: list[float] = []  # from when a change was due to when it was written

    async def change(seq: int, due: float) -> None:
        try:
            status, sent = await call(change_request(seq, services, per_service), end)
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            status, sent = 0, time.monotonic()
        service = change_target(seq, services, per_service)[0]
        record.append([seq, service, sent, time.monotonic(), status])
        if status != -1:
            queued.append(sent - due)

    pending: set[asyncio.Task[None]] = set()
    t0 = time.monotonic()
    # A node slower than ``rate`` leaves changes waiting for a connection: those still waiting
    # when the time is up are not sent (status -1), so the run stays bounded.
    end = t0 + seconds
    for seq in range(first, first + int(spec["rate"] * seconds)):
        due = t0 + (seq - first) / spec["rate"]
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.ensure_future(change(seq, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    return record, queued


async def writer_main(spec: dict[str, Any]) -> None:
    """``register``: the fixtures; ``go <out file>``: ``rate`` changes per second for
    ``duration`` s over ``connections`` keep-alive connections, the record written to the file."""
    host, port = spec["host"], spec["port"]
    services, per_service = spec["services"], spec["per_service"]
    conns = [await asyncio.open_connection(host, port) for _ in range(spec["connections"])]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)

    async def call(data: bytes, not_after: float = math.inf) -> tuple[int, float]:
        """Status and when the request was written (after waiting for a free connection);
        status -1, unsent, when no connection was free before ``not_after``."""
        reader, writer = await idle.get()
        try:
            sent = time.monotonic()
            if sent > not_after:
                return -1, sent
            writer.write(data)
            status, _, _, _ = await read_response(reader)
            return status, sent
        finally:
            idle.put_nowait((reader, writer))

    async def call_status(data: bytes) -> int:
        return (await call(data))[0]

    commands = await stdin_lines()
    while True:
        command = await commands.get()
        if command == "register":
            statuses = await asyncio.gather(
                *(
                    call_status(register_request(s, i))
                    for s in range(services)
                    for i in range(per_service)
                )
            )
            bad = [s for s in statuses if s != 200]
            print(json.dumps({"registered": len(statuses) - len(bad), "failed": len(bad)}))
            sys.stdout.flush()
        elif command.startswith("go "):
            _, out, first, seconds = command.split(" ")
            t0 = time.monotonic()
            record, queued = await apply_changes(spec, call, int(first), float(seconds))
            record.sort()
            Path(out).write_text(json.dumps(record))
            answers = [r[3] - r[2] for r in record if r[4] == 200]
            print(
                json.dumps(
                    {
                        "changes": len(record),
                        "ok": sum(1 for r in record if r[4] == 200),
                        "unsent": sum(1 for r in record if r[4] == -1),
                        "seconds": time.monotonic() - t0,
                        "answer": summarize_ms(answers),
                        "queued": summarize_ms(queued),
                        "applied_per_s": applied_rate(record),
                    }
                ),
                flush=True,
            )
        else:
            break
    for _, w in conns:
        w.close()


# -- phase 2 child: consumers of one service ----------------------------------------------------


async def consumers_main(spec: dict[str, Any]) -> None:
    """``count`` consumers of one service, watching it the ``mode`` way (poll | longpoll |
    stream); ``go`` starts the window, ``report <changes file>`` ends it."""
    raise_fd_limit()
    host, port, mode, count = spec["host"], spec["port"], spec["mode"], spec["count"]
    params = {"serviceName": LP_SERVICE, "groupName": GROUP}
    observations: list[list[tuple[float, int]]] = [[] for _ in range(count)]
    held = [-1] * count
    sent_bytes = [0]
    got_bytes = [0]

    def observe(no: int, at: float, seq: int) -> None:
        if seq > held[no]:
            held[no] = seq
            observations[no].append((at, seq))

    ready = asyncio.Event()
    ready_count = [0]

    def one_ready() -> None:
        ready_count[0] += 1
        if ready_count[0] == count:
            ready.set()

    async def poller(no: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        plain = http_request("GET", LIST_PATH, params)
        etag = ""
        first = True
        await asyncio.sleep(no * spec["poll_every"] / count if mode == "poll" else 0)
        while True:
            if mode == "longpoll" and etag:
                data = http_request(
                    "GET", LIST_PATH, {**params, "wait": 30000}, f"If-None-Match: {etag}\r\n"
                )
            else:
                data = plain
            started = time.monotonic()
            writer.write(data)
            sent_bytes[0] += len(data)
            status, headers, body, size = await read_response(reader)
            got_bytes[0] += size
            etag = headers.get("etag", etag)
            if status == 200:
                observe(no, time.monotonic(), max_seq(body))
            elif status != 304:
                raise RuntimeError(f"list answered {status}: {body[:200]!r}")
            if first:
                first = False
                one_ready()
            if mode == "poll":
                await asyncio.sleep(max(0.0, started + spec["poll_every"] - time.monotonic()))

    streams: list[SseStream] = []
    tasks: list[asyncio.Task[None]] = []
    if mode == "stream":

        def sink(no: int, arrived: float, index: int, kind: bytes, seq: int) -> None:
            if seq >= 0 and kind == b"update":
                observe(no, arrived, seq)

        streams, failed = await open_streams(host, port, [events_request(LP_SERVICE)] * count, sink)
        if failed:
            raise RuntimeError(f"{failed} streams failed")
        ready.set()
    else:
        tasks = [asyncio.ensure_future(poller(i)) for i in range(count)]
        await asyncio.wait_for(ready.wait(), 300)
    print("ready", flush=True)
    commands = await stdin_lines()
    t0 = time.monotonic()
    base_sent = base_got = 0
    while True:
        command = await commands.get()
        if command == "go":
            t0 = time.monotonic()
            base_sent = sent_bytes[0] + sum(s.bytes for s in streams)
            base_got = got_bytes[0]
            print("going", flush=True)
        elif command.startswith("report "):
            elapsed = time.monotonic() - t0
            total = sent_bytes[0] + got_bytes[0] + sum(s.bytes for s in streams)
            changes = [(c[0], c[2]) for c in load_changes(command.split(" ", 1)[1]) if c[4] == 200]
            stale: list[float] = []
            never = 0
            for obs in observations:
                late, missed = staleness(obs, changes)
                stale += late
                never += missed
            failed_tasks = [t for t in tasks if t.done() and t.exception() is not None]
            print(
                json.dumps(
                    {
                        "mode": mode,
                        "consumers": count,
                        "seconds": elapsed,
                        "bytes_per_consumer_per_min": per_minute(
                            total - base_sent - base_got, count, elapsed
                        ),
                        "changes": len(changes),
                        "staleness_ms": {
                            "p50": percentile(stale, 50) * 1000,
                            "max": max(stale, default=float("nan")) * 1000,
                            "count": len(stale),
                            "never": never,
                        },
                        "failed_consumers": len(failed_tasks),
                        "first_failure": repr(failed_tasks[0].exception()) if failed_tasks else "",
                    }
                ),
                flush=True,
            )
        else:
            break
    for t in tasks:
        t.cancel()
    for s in streams:
        s.close()


# -- the parent ---------------------------------------------------------------------------------


def start_node(base: Path, name: str) -> Any:
    from bench.run import bench_env
    from testkit.harness import NodeProcess

    env = bench_env(NAMING_SWEEP_ENABLED="false", NAMING_AUTH_ENABLED="false")
    return NodeProcess(base / name, env=env).start()


def child(mode: str, spec: dict[str, Any]) -> Child:
    return Child(f"--{mode}-spec", json.dumps(spec), script=__file__)


def ask_line(c: Child, line: str, timeout: float) -> dict[str, Any]:
    c.send(line)
    answer: dict[str, Any] = json.loads(c.expect("{", timeout))
    return answer


def kill_all(children: Iterable[Child]) -> None:
    for c in children:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(10)


def node_load(pid: int, gens: Sequence[Child], seconds: float) -> dict[str, Any]:
    samples, gen_samples = sample_cpu(pid, gens, seconds)
    per_second = cpu_pct(samples)
    return {
        "node_cpu_median_pct": statistics.median(per_second) if per_second else float("nan"),
        "node_cpu_max_pct": max(per_second, default=float("nan")),
        "node_cpu_mean_pct": cpu_pct([samples[0], samples[-1]])[0],
        "generators_cpu_pct": [
            cpu_pct([s[0], s[-1]])[0] if len(s) > 1 else float("nan") for s in gen_samples
        ],
        "rss_kb": rss_kb(pid),
    }


def py_spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "-r", "100", "-f", "raw", "--pid", str(pid), "-d", str(seconds)]
    return subprocess.Popen(
        [*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def streams_phase(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    node = start_node(base, "streams")
    children: list[Child] = []
    try:
        pid = node.proc.pid
        host, port = node.host, node.port
        writer = child(
            "writer",
            {
                "host": host,
                "port": port,
                "services": args.services,
                "per_service": args.per_service,
                "connections": args.writer_connections,
                "rate": args.rate,
                "duration": args.duration,
            },
        )
        children.append(writer)
        writer.send("register")
        registered = json.loads(writer.expect("{", 300))
        time.sleep(2)
        before = node_load(pid, [], args.idle)
        # The same change load with no stream open: what the writes alone cost the node.
        baseline_changes = int(args.rate * args.baseline)
        writer.send(f"go {base / 'baseline.json'} 1 {args.baseline}")
        no_streams = node_load(pid, [writer], args.baseline * 0.9)
        no_streams["writer"] = json.loads(writer.expect("{", args.baseline + 120))
        time.sleep(2)
        watch = stream_services(args.streams, args.group_streams, args.services)
        readers = [
            child("readers", {"host": host, "port": port, "watch": watch[i :: args.readers]})
            for i in range(args.readers)
        ]
        children += readers
        started = time.monotonic()
        opened = [json.loads(r.expect("{", 600)) for r in readers]
        open_s = time.monotonic() - started
        if not all(o["opened"] for o in opened):
            raise RuntimeError(f"a reader opened no stream: {opened}")
        print(
            f"streams: {sum(o['opened'] for o in opened)} open in {open_s:.1f} s "
            f"({sum(o['failed'] for o in opened)} failed); node PID {pid}",
            flush=True,
        )
        time.sleep(2)
        idle = node_load(pid, readers, args.idle)
        changes_file = base / "changes.json"
        writer.send(f"go {changes_file} {baseline_changes + 1} {args.duration}")
        spy = None
        if args.profile:
            time.sleep(min(3.0, args.duration / 4))
            spy = py_spy(pid, Path(args.profile) / "watch-streams.raw", 10)
        load = node_load(pid, [*readers, writer], args.duration * 0.9)
        wrote = json.loads(writer.expect("{", args.duration + 120))
        time.sleep(args.settle)
        reports = [ask_line(r, f"report {changes_file}", 300) for r in readers]
        if spy is not None:
            spy.wait(60)
        from_send = hist_merge(r["from_send"] for r in reports)
        from_answer = hist_merge(r["from_answer"] for r in reports)
        total = {
            k: sum(r["delivery"][k] for r in reports)
            for k in ("expected", "received", "missing", "duplicated", "out_of_order")
        }
        streams = sum(o["opened"] for o in opened)
        return {
            "streams": streams,
            "group_streams": min(args.group_streams, args.streams),
            "services": args.services,
            "per_service": args.per_service,
            "readers": args.readers,
            "rate": args.rate,
            "duration_s": args.duration,
            "registered": registered,
            "open_s": open_s,
            "failed_to_open": sum(o["failed"] for o in opened),
            "still_open": sum(r["still_open"] for r in reports),
            "writer": wrote,
            "delivery": total,
            "worst_stream_missing": max(r["worst_stream_missing"] for r in reports),
            "unknown_seq": sum(r["unknown_seq"] for r in reports),
            "arrived_before_answer": sum(r["arrived_before_answer"] for r in reports),
            "latency_from_send": hist_summary(from_send, max(r["max_send_ms"] for r in reports)),
            "latency_from_answer": hist_summary(
                from_answer, max(r["max_answer_ms"] for r in reports)
            ),
            "kinds": _sum_kinds(r["kinds"] for r in reports),
            "keepalives": sum(r["keepalives"] for r in reports),
            "reader_lag": [r["lag"] for r in reports],
            "reader_cpu_pct": [r["cpu_pct_since_open"] for r in reports],
            "node": {
                "before": before,
                "changes_no_streams": no_streams,
                "idle_streams": idle,
                "load": load,
            },
            "bytes_per_stream": (idle["rss_kb"] - before["rss_kb"]) * 1024 / max(streams, 1),
        }
    finally:
        for c in children:
            c.stop()
        kill_all(children)
        node.stop()
        node.kill9()


def _sum_kinds(kinds: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in kinds:
        for name, n in k.items():
            out[name] = out.get(name, 0) + n
    return out


def change_one(node: Any, seq: int, instances: int) -> list[float]:
    """One change to the watched service through the v1 API: (seq, 0, sent, answered, status)."""
    sent = time.monotonic()
    result = node.request(
        "PUT",
        INSTANCE_PATH,
        {
            "serviceName": LP_SERVICE,
            "groupName": GROUP,
            "ip": instance_ip(0, (seq - 1) % instances),
            "port": 8080,
            "ephemeral": "true",
            "metadata": json.dumps({"seq": str(seq)}),
        },
    )
    return [seq, 0, sent, time.monotonic(), result.status]


def consumers_phase(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    node = start_node(base, "consumers")
    results: dict[str, Any] = {
        "consumers": args.consumers,
        "instances": args.lp_instances,
        "window_s": args.window,
        "change_every_s": args.change_every,
        "poll_every_s": args.poll_every,
    }
    seq = 0
    try:
        pid = node.proc.pid
        for i in range(args.lp_instances):
            r = node.request(
                "POST",
                INSTANCE_PATH,
                {
                    "serviceName": LP_SERVICE,
                    "groupName": GROUP,
                    "ip": instance_ip(0, i),
                    "port": 8080,
                    "ephemeral": "true",
                    "metadata": json.dumps({"seq": "0"}),
                },
            )
            assert r.status == 200, r.text
        results["idle"] = node_load(pid, [], args.idle)
        for mode in args.ways:
            spec = {
                "host": node.host,
                "port": node.port,
                "mode": mode,
                "count": args.consumers,
                "poll_every": args.poll_every,
            }
            consumers = child("consumers", spec)
            try:
                consumers.expect("ready", 600)
                time.sleep(1)
                consumers.send("go")
                consumers.expect("going", 60)
                cpu0, t0 = cpu_seconds_of(pid), time.monotonic()
                gen0 = cpu_seconds_of(consumers.pid)
                record: list[list[float]] = []
                end = t0 + args.window
                next_change = t0 + args.change_every / 2
                while True:
                    now = time.monotonic()
                    if now >= end:
                        break
                    if now >= next_change:
                        seq += 1
                        record.append(change_one(node, seq, args.lp_instances))
                        next_change += args.change_every
                    time.sleep(max(0.0, min(next_change, end) - time.monotonic()))
                elapsed = time.monotonic() - t0
                node_pct = 100 * (cpu_seconds_of(pid) - cpu0) / elapsed
                gen_pct = 100 * (cpu_seconds_of(consumers.pid) - gen0) / elapsed
                # The last change's stragglers: a poller may hold it only one poll later.
                changes_file = base / f"changes-{mode}.json"
                changes_file.write_text(json.dumps(record))
                time.sleep(args.poll_every + 1 if mode == "poll" else 1)
                report = ask_line(consumers, f"report {changes_file}", 120)
                report["node_cpu_pct"] = node_pct
                report["generator_cpu_pct"] = gen_pct
                report["rss_kb"] = rss_kb(pid)
                results[mode] = report
                print(
                    f"{mode}: node {node_pct:.1f} % CPU, "
                    f"{report['bytes_per_consumer_per_min'] / 1024:.1f} KB/consumer/min, "
                    f"staleness p50 {report['staleness_ms']['p50']:.0f} ms",
                    flush=True,
                )
            finally:
                consumers.stop()
                kill_all([consumers])
            time.sleep(2)
        return results
    finally:
        node.stop()
        node.kill9()


# -- the report -----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> None:
    s = results.get("streams")
    if s:
        n = s["node"]
        d = s["delivery"]
        ls, la = s["latency_from_send"], s["latency_from_answer"]
        print(
            f"\n{s['streams']} streams ({s['group_streams']} on the group, the rest over "
            f"{s['services']} services), {s['rate']} changes/s for {s['duration_s']:.0f} s "
            f"({s['writer']['ok']} of {s['writer']['changes']} changes answered 200):"
        )
        print(
            f"  events: {d['received']} received of {d['expected']} expected, {d['missing']} "
            f"missing, {d['duplicated']} duplicated, {d['out_of_order']} out of order"
        )
        print(
            f"  latency from send:   p50 {ls['p50_ms']:.1f} ms, p99 {ls['p99_ms']:.1f} ms, "
            f"max {ls['max_ms']:.1f} ms"
        )
        print(
            f"  latency from answer: p50 {la['p50_ms']:.1f} ms, p99 {la['p99_ms']:.1f} ms, "
            f"max {la['max_ms']:.1f} ms ({s['arrived_before_answer']} before the answer)"
        )
        print(f"  {'node':<22} {'CPU median %':>12} {'CPU max %':>10} {'RSS MB':>8}")
        for label, key in (
            ("before streams", "before"),
            ("changes, no stream", "changes_no_streams"),
            ("streams idle", "idle_streams"),
            ("under change load", "load"),
        ):
            m = n[key]
            print(
                f"  {label:<22} {m['node_cpu_median_pct']:>12.1f} {m['node_cpu_max_pct']:>10.1f} "
                f"{m['rss_kb'] / 1024:>8.1f}"
            )
        print(f"  memory per stream: {s['bytes_per_stream'] / 1024:.1f} KB")
        lags = ", ".join(f"{lag['p99_ms']:.1f}" for lag in s["reader_lag"])
        cpus = ", ".join(f"{c:.0f}" for c in n["load"]["generators_cpu_pct"])
        print(f"  generators under load: CPU % {cpus} (readers..., writer); loop lag p99 ms {lags}")
        for label, w in (
            ("writer, no stream", n["changes_no_streams"]["writer"]),
            ("writer, streams", s["writer"]),
        ):
            print(
                f"  {label}: {w['applied_per_s']:.0f} changes/s applied (asked {s['rate']:.0f}), "
                f"answer p50 {w['answer']['p50_ms']:.1f} ms, p99 {w['answer']['p99_ms']:.1f} ms; "
                f"waited to be sent p99 {w['queued']['p99_ms']:.1f} ms"
            )
        met = ls["p99_ms"] <= P99_TARGET_MS and d["missing"] == 0
        print(f"  target p99 <= {P99_TARGET_MS:.0f} ms, no loss: {'met' if met else 'MISSED'}")
    c = results.get("consumers")
    if c:
        print(
            f"\n{c['consumers']} consumers of one {c['instances']}-instance service, a change "
            f"every {c['change_every_s']:.0f} s, {c['window_s']:.0f} s per way "
            f"(node idle {c['idle']['node_cpu_median_pct']:.1f} % CPU):"
        )
        print(
            f"  {'way':<10} {'node CPU %':>10} {'KB/consumer/min':>16} {'stale p50 ms':>13} "
            f"{'stale max ms':>13} {'never':>6}"
        )
        for mode in ("poll", "longpoll", "stream"):
            r = c.get(mode)
            if r:
                st = r["staleness_ms"]
                print(
                    f"  {mode:<10} {r['node_cpu_pct']:>10.1f} "
                    f"{r['bytes_per_consumer_per_min'] / 1024:>16.1f} {st['p50']:>13.0f} "
                    f"{st['max']:>13.0f} {st['never']:>6}"
                )


PHASES = ("streams", "consumers")
WAYS = ("poll", "longpoll", "stream")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--quick", action="store_true", help="both phases shrunk")
    parser.add_argument("--skip", nargs="*", default=[], choices=PHASES)
    parser.add_argument("--streams", type=int, default=None, help="open event streams (5000)")
    parser.add_argument("--group-streams", type=int, default=10)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--readers", type=int, default=2, help="stream generator processes")
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second")
    parser.add_argument("--duration", type=float, default=None, help="seconds of changes (30)")
    parser.add_argument("--writer-connections", type=int, default=8)
    parser.add_argument("--idle", type=float, default=None, help="seconds of each idle sample")
    parser.add_argument("--settle", type=float, default=2.0, help="s for late events")
    parser.add_argument(
        "--baseline", type=float, default=None, help="s of the change load with no stream (10)"
    )
    parser.add_argument("--profile", help="py-spy the node for 10 s of the change load into DIR")
    parser.add_argument("--consumers", type=int, default=None, help="phase 2 consumers (1000)")
    parser.add_argument("--lp-instances", type=int, default=100)
    parser.add_argument("--window", type=float, default=None, help="phase 2 s per way (60)")
    parser.add_argument("--change-every", type=float, default=10.0)
    parser.add_argument("--poll-every", type=float, default=5.0)
    parser.add_argument("--ways", nargs="*", default=list(WAYS), choices=WAYS)
    parser.add_argument("--readers-spec", dest="readers_spec", help=argparse.SUPPRESS)
    parser.add_argument("--writer-spec", dest="writer_spec", help=argparse.SUPPRESS)
    parser.add_argument("--consumers-spec", dest="consumers_spec", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    for spec, run in (
        (args.readers_spec, readers_main),
        (args.writer_spec, writer_main),
        (args.consumers_spec, consumers_main),
    ):
        if spec is not None:
            uvloop.run(run(json.loads(spec)))  # the node's loop too: the cheaper reads
            return 0
    quick = args.quick
    args.streams = args.streams or (500 if quick else 5000)
    args.duration = args.duration or (8.0 if quick else 30.0)
    args.idle = args.idle or (3.0 if quick else 8.0)
    args.baseline = args.baseline or (4.0 if quick else 10.0)
    args.consumers = args.consumers or (200 if quick else 1000)
    args.window = args.window or (20.0 if quick else 60.0)
    raise_fd_limit()
    base = Path(tempfile.mkdtemp(prefix="naming-bench-watch-"))
    results: dict[str, Any] = {
        "taken": time.strftime("%Y-%m-%d %H:%M"),
        "quick": quick,
        "load_average": os.getloadavg(),
    }
    try:
        if "streams" not in args.skip:
            results["streams"] = streams_phase(args, base)
        if "consumers" not in args.skip:
            results["consumers"] = consumers_phase(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
