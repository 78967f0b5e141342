"""The one process-wide counters registry, on ``prometheus_client``.

Everything here is exported at ``GET /metrics`` (``server/prometheus.py``) in the Prometheus
text format. We use a :class:`CollectorRegistry` of our own rather than the library's global
``REGISTRY``: that one also carries the library's process/platform collectors and whatever an
imported package registers, and a test or a second runtime in one process could not tell our
series apart from theirs.

The metrics are process-wide on purpose (one node = one process): two runtimes in one test
process add to the same series, so unit tests assert on the per-object counts the loop and
listener helpers keep, and only the end-to-end test reads the exported text.

Cost (measured on this 2-core box, CPython 3.11, prometheus-client 0.26, timeit): a
pre-resolved child's ``inc()`` is ~1 µs and a histogram ``observe()`` ~2 µs, each under a
per-child lock; a ``labels(...)`` lookup costs another ~2.5 µs, which is why the helpers
resolve their children once. A hot request costs a few hundred µs, so one observe is noise.

Bottom layer: imports nothing from the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# No ``*_created`` series (one per counter/histogram child, with the time it was created): they
# double the output and tell nothing here, where every series starts with the process.
cast(Callable[[], None], disable_created_metrics)()  # cast: the library leaves it unannotated

REGISTRY = CollectorRegistry(auto_describe=True)

# Loop rounds take from microseconds (an idle push tick) to seconds (a verify round to a slow
# peer, active health checks with their 2 s probe timeout).
LOOP_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
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

# prometheus_client appends ``_total`` to counter names in the exposition.
LOOP_RUNS = Counter(
    "naming_loop_runs",
    "Rounds (periodic loops) or batches (queue-driven workers) run, failed ones included.",
    ["loop"],
    registry=REGISTRY,
)
LOOP_FAILURES = Counter(
    "naming_loop_failures",
    "Rounds or batches that raised (the loop went on).",
    ["loop"],
    registry=REGISTRY,
)
LOOP_LAST_RUN = Gauge(
    "naming_loop_last_run_timestamp_seconds",
    "Wall-clock time the last round or batch ended (a stalled loop stops moving it).",
    ["loop"],
    registry=REGISTRY,
)
LOOP_LAST_FAILURE = Gauge(
    "naming_loop_last_failure_timestamp_seconds",
    "Wall-clock time of the last failed round or batch (0: none yet).",
    ["loop"],
    registry=REGISTRY,
)
LOOP_DURATION = Histogram(
    "naming_loop_duration_seconds",
    "How long one round or batch took.",
    ["loop"],
    buckets=LOOP_BUCKETS,
    registry=REGISTRY,
)
LISTENER_CALLS = Counter(
    "naming_listener_calls",
    "Calls of one listener (source: the list it is on).",
    ["source", "listener"],
    registry=REGISTRY,
)
LISTENER_FAILURES = Counter(
    "naming_listener_failures",
    "Calls of one listener that raised (isolated: the others and the caller went on).",
    ["source", "listener"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "naming_http_request_duration_seconds",
    "Time in the WSGI application per request, by hot route (or 'other') and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)


class LoopSeries:
    """The pre-resolved children of the loop metrics for one loop name."""

    __slots__ = ("duration", "failures", "last_failure", "last_run", "runs")

    def __init__(self, loop: str) -> None:
        self.runs = LOOP_RUNS.labels(loop)
        self.failures = LOOP_FAILURES.labels(loop)
        self.last_run = LOOP_LAST_RUN.labels(loop)
        self.last_failure = LOOP_LAST_FAILURE.labels(loop)
        self.duration = LOOP_DURATION.labels(loop)


class ListenerSeries:
    """The pre-resolved children of the listener metrics for one listener."""

    __slots__ = ("calls", "failures")

    def __init__(self, source: str, listener: str) -> None:
        self.calls = LISTENER_CALLS.labels(source, listener)
        self.failures = LISTENER_FAILURES.labels(source, listener)


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
