"""UDP push to subscribed Java/Node clients (Nacos 1.x ``PushService``, spec §C.8).

A client subscribes by calling ``instance/list`` with ``udpPort > 0`` when its User-Agent is
eligible (Java ≥ ``pushJavaVersion``, which includes the Node SDK; DNS, C, Go, C#; never the
Python SDK). After a service changes, every live subscriber of it gets, one second later (changes
in that second are merged), the JSON ``instance/list`` would answer it, double-encoded in
``{"type":"dom","data":"…","lastRefTime":N}``, gzipped from 1 KB. The client acks with
``{"type":"push-ack","lastRefTime":N}``; an unacked packet is sent once more after 10 s, then
counted as failed. A subscriber that has not polled within ``defaultPushCacheMillis`` is a zombie
and is dropped.

Deviation from Nacos, on purpose: packets go to the HTTP peer's address, not to the ``clientIP``
parameter. ``clientIP`` is whatever the caller claims, and trusting it lets anyone aim this
server's UDP at a third party.

Threads (owned by :class:`PushService`, started by the runtime, stopped by ``stop()`` which
closes the socket and sets an Event): ``push-acks`` receives acks; ``push-timer`` sends the
debounced pushes, retries and sweeps zombies (a ``lib.loops.PeriodicLoop``, counted as
``naming_loop_*{loop="push-timer"}``).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from facades.nacos_v1.clients import ClientInfo, ClientType, version_tuple
from lib.loops import PeriodicLoop
from naming.domain import ServiceName, Switches
from naming.registry import ServiceView

log = logging.getLogger(__name__)

DEBOUNCE_S = 1.0
ACK_TIMEOUT_S = 10.0
MAX_RETRIES = 1
GZIP_FROM_BYTES = 1024
TICK_S = 0.2  # the timer's period: debounce, ack retries and zombies are checked this often

Render = Callable[[ServiceView, str, tuple[str, ...], bool, int], str]


@dataclass(frozen=True, slots=True)
class SubscriberKey:
    service: ServiceName
    clusters: str
    ip: str
    port: int
    agent: str


@dataclass(slots=True)
class Subscriber:
    key: SubscriberKey
    cluster_names: tuple[str, ...]
    grouped: bool
    app: str
    last_refresh: float


@dataclass(slots=True)
class PendingAck:
    target: tuple[str, int]
    packet: bytes
    sent_at: float
    retries: int = 0


@dataclass(frozen=True, slots=True)
class PushCounts:
    """One consistent reading of :class:`PushStats` (what ``operator/push/state`` answers)."""

    total: int
    succeed: int
    failed: int
    errors: int
    failed_packets: tuple[str, ...]


class PushStats:
    """Push counters, written by ``push-timer`` and ``push-acks`` and read (and zeroed, on
    ``push_state?reset=true``) by request threads.

    One lock around every change: ``x += 1`` on an attribute is a read, an add and a write, so
    a reset between them was undone by the write, and a reader could see ``succeed`` counted
    against a ``total`` from before a reset (a ratio above 1). Pushes are per subscriber per
    changed service, after a 1 s debounce: the lock is nowhere near a hot path.
    """

    __slots__ = ("_errors", "_failed", "_failed_packets", "_lock", "_succeed", "_total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = self._succeed = self._failed = self._errors = 0
        self._failed_packets: deque[str] = deque(maxlen=50)

    def sent(self) -> None:
        with self._lock:
            self._total += 1

    def acked(self) -> None:
        with self._lock:
            self._succeed += 1

    def failed(self, address: str) -> None:
        with self._lock:
            self._failed += 1
            self._failed_packets.append(address)

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def read(self, reset: bool = False) -> PushCounts:
        """The counters as one consistent reading; ``reset`` zeroes them in the same step."""
        with self._lock:
            counts = PushCounts(
                self._total,
                self._succeed,
                self._failed,
                self._errors,
                tuple(self._failed_packets),
            )
            if reset:
                self._total = self._succeed = self._failed = self._errors = 0
                self._failed_packets.clear()
        return counts


def eligible(client: ClientInfo, switches: Switches) -> bool:
    minimum = {
        ClientType.JAVA: switches.pushJavaVersion,
        ClientType.DNS: switches.pushPythonVersion,
        ClientType.C: switches.pushCVersion,
        ClientType.GO: switches.pushGoVersion,
        ClientType.CSHARP: switches.pushCSharpVersion,
    }.get(client.type)
    return minimum is not None and client.version >= version_tuple(minimum)


class PushService:
    def __init__(self, host: str, render: Render, clock: Callable[[], float] = time.monotonic):
        self._host = host
        self._render = render
        self._clock = clock
        self._lock = threading.Lock()
        self._subscribers: dict[ServiceName, dict[SubscriberKey, Subscriber]] = {}
        self._due: dict[ServiceName, tuple[float, ServiceView]] = {}
        self._pending: dict[tuple[str, int, int], PendingAck] = {}
        self._seq = int(time.time() * 1000) * 1000  # < 2**53: JavaScript echoes it exactly
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.timer: PeriodicLoop | None = None
        self.stats = PushStats()
        self.push_cache_s = 10.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((self._host, 0))
        self._sock.settimeout(0.5)
        # The timer is periodic (every TICK_S, or at once when a change wakes it); the ack
        # receiver blocks on its socket instead, so it stays a plain thread.
        self.timer = PeriodicLoop(
            "push-timer",
            self._tick,
            TICK_S,
            owner="PushService",
            stop_event=self._stop,
            wake=self._wake,
            on_error=self._tick_failed,
        )
        self.timer.start()
        receiver = threading.Thread(target=self._receive_loop, name="push-acks", daemon=True)
        receiver.start()
        self._threads.append(receiver)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.timer is not None:
            self.timer.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    @property
    def port(self) -> int:
        return 0 if self._sock is None else int(self._sock.getsockname()[1])

    # -- subscriptions (request threads) -----------------------------------------------------

    def subscribe(
        self,
        service: ServiceName,
        clusters: str,
        cluster_names: tuple[str, ...],
        ip: str,
        port: int,
        client: ClientInfo,
        app: str,
    ) -> None:
        key = SubscriberKey(service, clusters, ip, port, client.agent)
        with self._lock:
            per_service = self._subscribers.setdefault(service, {})
            found = per_service.get(key)
            if found is None:
                per_service[key] = Subscriber(
                    key, cluster_names, client.is_java_1x, app, self._clock()
                )
            else:
                found.last_refresh = self._clock()

    def subscribers(self, service: ServiceName) -> list[Subscriber]:
        with self._lock:
            return list(self._subscribers.get(service, {}).values())

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(per_service) for per_service in self._subscribers.values())

    # -- changes (notifier thread) -----------------------------------------------------------

    def on_service_changed(self, view: ServiceView) -> None:
        """Registry listener: schedule a push one second from now, merging later changes."""
        with self._lock:
            if view.name not in self._subscribers:
                return
            due = self._due.get(view.name)
            self._due[view.name] = (due[0] if due else self._clock() + DEBOUNCE_S, view)
        self._wake.set()

    # -- threads -----------------------------------------------------------------------------

    def _tick_failed(self, _exc: BaseException) -> None:
        """One bad round must not end pushing for good: the loop helper logged and counted it
        (``naming_loop_failures_total{loop="push-timer"}``); ``push_state`` counts it too."""
        self.stats.error()

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            ready = [(name, view) for name, (at, view) in self._due.items() if at <= now]
            for name, _ in ready:
                self._due.pop(name, None)
            self._drop_zombies(now)
            retry = [(k, p) for k, p in self._pending.items() if now - p.sent_at >= ACK_TIMEOUT_S]
        for name, view in ready:
            for sub in self.subscribers(name):
                self._push(sub, view)
        for key, pending in retry:
            if pending.retries >= MAX_RETRIES:
                with self._lock:
                    self._pending.pop(key, None)
                self.stats.failed(f"{key[0]}:{key[1]}")
                continue
            pending.retries += 1
            pending.sent_at = now
            self._send(pending.packet, pending.target)

    def _drop_zombies(self, now: float) -> None:
        for name in list(self._subscribers):
            per_service = self._subscribers[name]
            for key in [
                k for k, s in per_service.items() if now - s.last_refresh > self.push_cache_s
            ]:
                per_service.pop(key, None)
            if not per_service:
                self._subscribers.pop(name, None)

    def _push(self, sub: Subscriber, view: ServiceView) -> None:
        data = self._render(
            view, sub.key.clusters, sub.cluster_names, sub.grouped, int(self.push_cache_s * 1000)
        )
        with self._lock:
            self._seq += 1
            seq = self._seq
        packet = json.dumps({"type": "dom", "data": data, "lastRefTime": seq}).encode()
        if len(packet) >= GZIP_FROM_BYTES:
            packet = gzip.compress(packet)
        target = (sub.key.ip, sub.key.port)
        with self._lock:
            self._pending[(sub.key.ip, sub.key.port, seq)] = PendingAck(
                target, packet, self._clock()
            )
        self.stats.sent()
        self._send(packet, target)

    def _send(self, packet: bytes, target: tuple[str, int]) -> None:
        try:
            assert self._sock is not None
            self._sock.sendto(packet, target)
        except OSError as exc:
            self.stats.error()
            log.warning("push to %s:%s failed: %s", target[0], target[1], exc)

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                assert self._sock is not None
                data, (ip, port, *_) = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                ack = json.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
                seq = int(ack["lastRefTime"])  # Java sends a string, Node a number
            except (ValueError, KeyError, TypeError, OSError, EOFError):
                self.stats.error()
                continue
            with self._lock:
                done = self._pending.pop((ip, port, seq), None)
            if done is not None:
                self.stats.acked()
