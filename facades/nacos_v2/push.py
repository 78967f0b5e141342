"""``NotifySubscriberRequest`` pushes on the subscribers' own streams (``nacos-v2-grpc.md`` §2.4).

A registry change (from any edge, or from a peer through Distro sync: every member's registry
sees every change) marks its service dirty if a connection here subscribes to it. Changes within
``merge_s`` go out as one push per subscriber, rendered from the view current when it is sent.
Each push waits for the client's ``NotifySubscriberResponse`` (matched by ``requestId``); one
not answered within ``timeout_s`` is sent again after ``retry_s`` (with the then current view),
at most ``retries`` times, unless a newer push to that subscriber superseded it.

Nothing is pushed while the node is not UP: a member that is still loading its snapshot would
otherwise tell subscribers a service is empty while other members hold its instances.

Threads: the notifier thread calls :meth:`PushHub.on_service_changed`; everything else runs on
the gRPC edge's event loop (``server.GrpcEdge`` owns it and stops it with the server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facades.nacos_v2 import wire
from facades.nacos_v2.connections import Connection, next_request_id
from facades.nacos_v2.render import service_info
from naming.domain import ServiceName
from naming.registry import Registry, ServiceView

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    changes: int = 0  # registry changes of a subscribed service
    flushes: int = 0
    sent: int = 0
    acked: int = 0
    timeouts: int = 0
    retried: int = 0
    superseded: int = 0
    gave_up: int = 0
    held_not_up: int = 0  # pushes not sent while the node was not UP (sent once it is)
    ack_ms_total: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.__dict__)
        out["ackMsAvg"] = round(self.ack_ms_total / self.acked, 3) if self.acked else None
        del out["ack_ms_total"]
        return out


class PushHub:
    def __init__(
        self,
        registry: Registry,
        is_up: Callable[[], bool],
        cache_millis: Callable[[], int],
        merge_s: float,
        timeout_s: float,
        retries: int,
        retry_s: float = 1.0,
    ) -> None:
        self._registry = registry
        self._is_up = is_up
        self._cache_millis = cache_millis
        self.merge_s = merge_s
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_s = retry_s
        # service → {connection: clusters}; written on the loop only. The notifier thread
        # reads membership (a dict lookup under the GIL) to skip unsubscribed services.
        self.subscribers: dict[ServiceName, dict[Connection, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[ServiceName] = set()
        self._flush_at: asyncio.TimerHandle | None = None
        # (connection id, service) → the generation of its latest push: a retry of an older
        # one is dropped.
        self._generation: dict[tuple[str, ServiceName], int] = {}
        self.stats = PushStats()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def unbind(self) -> None:
        self._loop = None

    # -- subscriptions (loop) --------------------------------------------------------------------

    def subscribe(self, conn: Connection, service: ServiceName, clusters: str) -> None:
        """Subscribe, and push the service as it is to a new subscriber alone, a merge window
        later (Nacos's push task for a new subscriber): 2.0.9 ignores the state in the
        subscribe answer, so its callback would otherwise hear nothing until the next change."""
        subs = self.subscribers.setdefault(service, {})
        # Only a new subscription: 3.2.0 subscribes again on every list that misses its cache,
        # and it (like 2.0.9) already has the service from the first push.
        fresh = subs.get(conn) != clusters
        subs[conn] = clusters
        conn.subscriptions[service] = clusters
        if fresh and self._loop is not None:
            self._loop.call_later(self.merge_s, self.push, conn, service)

    def unsubscribe(self, conn: Connection, service: ServiceName) -> None:
        subs = self.subscribers.get(service)
        if subs is not None:
            subs.pop(conn, None)
            if not subs:
                del self.subscribers[service]
        conn.subscriptions.pop(service, None)
        self._generation.pop((conn.id, service), None)

    def drop(self, conn: Connection) -> None:
        for service in list(conn.subscriptions):
            self.unsubscribe(conn, service)

    def subscription_count(self) -> int:
        return sum(len(subs) for subs in list(self.subscribers.values()))

    # -- changes (notifier thread) -----------------------------------------------------------

    def on_service_changed(self, view: ServiceView) -> None:
        loop = self._loop
        if loop is None or view.name not in self.subscribers:
            return
        self.stats.changes += 1
        try:
            loop.call_soon_threadsafe(self._mark, view.name)
        except RuntimeError:  # the loop closed while the node stops
            pass

    # -- pushing (loop) ------------------------------------------------------------------------

    def _mark(self, service: ServiceName) -> None:
        self._dirty.add(service)
        if self._flush_at is None and self._loop is not None:
            self._flush_at = self._loop.call_later(self.merge_s, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        if not self._is_up():
            # Keep them dirty: sent once the node is UP (checked again a merge window later).
            self.stats.held_not_up += len(self._dirty)
            if self._dirty and self._loop is not None:
                self._flush_at = self._loop.call_later(max(self.merge_s, 0.1), self._flush)
            return
        dirty, self._dirty = self._dirty, set()
        self.stats.flushes += 1
        for service in dirty:
            for conn in list(self.subscribers.get(service, {})):
                self.push(conn, service)

    def push(self, conn: Connection, service: ServiceName, attempt: int = 0) -> None:
        """Send the service's current info to one subscriber and wait for its ack."""
        loop = self._loop
        clusters = self.subscribers.get(service, {}).get(conn)
        if loop is None or clusters is None or not conn.open:
            return
        key = (conn.id, service)
        generation = self._generation.get(key, 0) + (0 if attempt else 1)
        self._generation[key] = generation
        rid = next_request_id()
        info = service_info(
            service,
            self._registry.get(service),
            clusters,
            False,
            self._cache_millis(),
            int(time.time() * 1000),
        )
        body = {
            "requestId": rid,
            "headers": {},
            "module": "naming",
            "namespace": service.namespace,
            "serviceName": service.name,
            "groupName": service.group,
            "serviceInfo": info,
        }
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        conn.pending[rid] = waiter
        sent_at = time.monotonic()
        conn.send(wire.encode("NotifySubscriberRequest", body))
        conn.pushes += 1
        self.stats.sent += 1
        timer = loop.call_later(self.timeout_s, self._timed_out, conn, service, rid, attempt)

        def answered(done: asyncio.Future[dict[str, Any]]) -> None:
            timer.cancel()
            if not done.cancelled():
                self.stats.acked += 1
                self.stats.ack_ms_total += (time.monotonic() - sent_at) * 1000

        waiter.add_done_callback(answered)

    def _timed_out(self, conn: Connection, service: ServiceName, rid: str, attempt: int) -> None:
        waiter = conn.pending.pop(rid, None)
        if waiter is None or waiter.done():
            return
        waiter.cancel()
        self.stats.timeouts += 1
        conn.push_failures += 1
        if attempt >= self.retries:
            self.stats.gave_up += 1
            log.info("push of %s to %s not acknowledged; giving up", service.grouped, conn.id)
            return
        generation = self._generation.get((conn.id, service))

        def retry() -> None:
            if self._generation.get((conn.id, service)) != generation:
                self.stats.superseded += 1
                return
            self.stats.retried += 1
            self.push(conn, service, attempt + 1)

        if self._loop is not None:
            self._loop.call_later(self.retry_s, retry)
