"""The one process-wide counters registry, on ``prometheus_client``.

Everything here is exported at ``GET /metrics`` (``node/prometheus.py``) in the Prometheus
text format. We use a :class:`CollectorRegistry` of our own rather than the library's global
``REGISTRY``: that one also carries the library's process/platform collectors and whatever an
imported package registers, and a test or a second runtime in one process could not tell our
series apart from theirs.

The series are process-wide on purpose (one node = one process): two runtimes in one test
process add to the same series (loop and listener counts are summed per name), so unit tests
assert on the per-object counts the helpers keep, and the end-to-end test reads the text.

Two kinds of series:

- read at scrape time (:func:`register_scrape_time`): the loop and listener counts
  (``lib.loops``, ``lib.listeners``) are plain ``int``/``float`` attributes on their objects,
  summed per name when Prometheus scrapes, and the node's gauges. Nothing per event but an
  integer add;
- kept by prometheus-client: the request latency histogram, observed once per request.

Why not prometheus-client counters everywhere: measured on this 2-core box (CPython 3.11,
prometheus-client 0.26, timeit, box under load), a pre-resolved child's ``inc()`` is ~1 µs and a
histogram ``observe()`` ~2 µs (each takes a per-child lock); a loop tracker built on them cost
~4 µs per notifier batch and two counted listener calls ~1.5 µs, on every write (register is
~65 µs in process); with plain attributes a tracked batch costs ~0.2 µs. The request
histogram stays a real one (``labels(...)`` resolved once per route and method, not per
request).

Bottom layer: imports nothing from the project.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# No ``*_created`` series (one per counter/histogram child, with the time it was created): they
# double the output and tell nothing here, where every series starts with the process.
cast(Callable[[], None], disable_created_metrics)()  # cast: the library leaves it unannotated

REGISTRY = CollectorRegistry(auto_describe=True)

T = TypeVar("T")

# Hot requests take ~0.1-1 ms in process; the tail (GIL contention, a raft write) is wider.
REQUEST_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

REQUEST_DURATION = Histogram(
    "naming_http_request_duration_seconds",
    "Time in the WSGI application per request, by hot route (or 'other') and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)


class _ScrapeTimeCollector(Collector):
    """Calls a function at scrape time: gauges that read live state cost nothing per request."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        return []  # unknown until scraped: skips auto_describe's trial collect at registration


def register_scrape_time(collect: Callable[[], Iterable[Metric]]) -> Collector:
    """Register ``collect`` to run at every scrape; returns the collector (to unregister)."""
    collector = _ScrapeTimeCollector(collect)
    REGISTRY.register(collector)
    return collector


class LiveObjects(Generic[T]):
    """The live objects (weakly held) whose plain counters a scrape-time collector reads.

    ``add`` runs when an object is built, ``snapshot`` on the scraping thread; one lock keeps
    the weak set from changing size under the iteration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: weakref.WeakSet[T] = weakref.WeakSet()

    def add(self, item: T) -> None:
        with self._lock:
            self._items.add(item)

    def snapshot(self) -> list[T]:
        with self._lock:
            return list(self._items)
