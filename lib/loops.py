"""The one helper every background loop runs through.

:class:`LoopTracker` counts the rounds (or batches) of one named loop: runs, failures, the last
error, the last duration, as plain attributes (an integer add per round: the notifier counts
every write batch with one), read by ``operator/metrics`` JSON, by unit tests and, at scrape
time, by the collector below that exports them at ``GET /metrics`` (summed per loop name):
``naming_loop_runs_total``, ``naming_loop_failures_total``, ``naming_loop_duration_seconds``
(a summary: count and sum), ``naming_loop_last_duration_seconds``,
``naming_loop_last_run_timestamp_seconds``, ``naming_loop_last_failure_timestamp_seconds``.
It never lets an exception escape a round, and logs failures at most once per ``LOG_EVERY_S``
per loop with a count of the ones it held back, so a loop failing every 200 ms does not flood
the log.

:class:`PeriodicLoop` is the thread: a name, an interval, an owner, a stop event; it calls one
body every interval through its tracker. Queue-driven workers (Distro's per-peer sync threads,
the Raft batcher, the notifier) keep their own wait logic and count each batch with a tracker.

Bottom layer: imports nothing from the project.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from lib.counters import LiveObjects, register_scrape_time
from lib.ratelimit import LogThrottle

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0  # at most one failure log line per loop per minute (after the first)


class LoopTracker:
    """Counts and isolates the rounds of one loop.

    Thread safety: one thread at a time (every user runs it on one thread, or under its own
    lock); the scraping thread only reads the attributes.
    """

    def __init__(self, name: str, log_every_s: float = LOG_EVERY_S) -> None:
        self.name = name
        self.runs = 0
        self.failures = 0
        self.last_error = ""
        self.last_duration_s = 0.0
        self.duration_sum_s = 0.0
        self.last_run_at = 0.0  # wall clock; 0: never
        self.last_failure_at = 0.0
        self._log_throttle = LogThrottle(log_every_s)
        _LIVE.add(self)

    def run(
        self,
        body: Callable[[], object],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> bool:
        """Run one round; True if it returned, False if it raised (counted, logged, swallowed).

        ``on_error`` lets an owner keep its own statistics of the failure as well.
        """
        started = time.perf_counter()
        try:
            body()
        except Exception as exc:  # one bad round must never end the loop
            self.failed(exc, time.perf_counter() - started)
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception:
                    log.exception("error hook of loop %s failed", self.name)
            return False
        self.succeeded(time.perf_counter() - started)
        return True

    def succeeded(self, duration_s: float) -> None:
        """Count a round that worked (for workers that time their batches themselves)."""
        self._count(duration_s)

    def failed(self, exc: BaseException | str, duration_s: float = 0.0) -> None:
        """Count a round that failed: ``exc`` an exception (logged with its traceback, rate
        limited) or a message (for failures the caller handled and logged already)."""
        self._count(duration_s)
        self.failures += 1
        self.last_failure_at = self.last_run_at
        if isinstance(exc, BaseException):
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self._log(exc)
        else:
            self.last_error = exc[:300]

    def _count(self, duration_s: float) -> None:
        self.runs += 1
        self.last_duration_s = duration_s
        self.duration_sum_s += duration_s
        self.last_run_at = time.time()

    def _log(self, exc: BaseException) -> None:
        held = self._log_throttle.admit()
        if held is None:
            return
        more = f" ({held} more failures since the last report)" if held else ""
        log.error("loop %s round failed%s", self.name, more, exc_info=exc)


class PeriodicLoop:
    """A daemon thread running ``body`` every ``interval_s`` through a :class:`LoopTracker`.

    ``owner`` names the object that starts and stops it (shown in ``repr`` and the thread-list
    docs). The first round runs after ``first_delay_s`` (default: one interval; 0 runs at
    once). ``stop_event`` may be shared by the owner's loops so one ``set()`` stops them all;
    ``wake``, when given, is waited on instead of the stop event, so the owner can cut an
    interval short (e.g. new work); :meth:`stop` sets both.

    The interval is measured from the end of one round to the start of the next (a slow round
    delays the next instead of piling up).
    """

    def __init__(
        self,
        name: str,
        body: Callable[[], object],
        interval_s: float,
        *,
        owner: str = "",
        first_delay_s: float | None = None,
        stop_event: threading.Event | None = None,
        wake: threading.Event | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self.owner = owner
        self.interval_s = interval_s
        self.first_delay_s = interval_s if first_delay_s is None else first_delay_s
        self.tracker = LoopTracker(name)
        self._body = body
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._wake = wake
        self._on_error = on_error
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<PeriodicLoop {self.name} every {self.interval_s:g}s owned by {self.owner}>"

    # The tracker's counts, for the owners' JSON statistics.
    @property
    def runs(self) -> int:
        return self.tracker.runs

    @property
    def failures(self) -> int:
        return self.tracker.failures

    @property
    def last_error(self) -> str:
        return self.tracker.last_error

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop and wait up to ``timeout`` for the round in progress."""
        self._stop.set()
        if self._wake is not None:
            self._wake.set()
        self.join(timeout)

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> bool:
        """One counted round on the calling thread (tests, or an owner's extra round)."""
        return self.tracker.run(self._body, self._on_error)

    def _wait(self, seconds: float) -> bool:
        """True when the loop must end."""
        if self._wake is None:
            return self._stop.wait(seconds)
        self._wake.wait(seconds)
        self._wake.clear()
        return self._stop.is_set()

    def _run(self) -> None:
        if self.first_delay_s > 0 and self._wait(self.first_delay_s):
            return
        while not self._stop.is_set():
            self.run_once()
            if self._wait(self.interval_s):
                return


_LIVE: LiveObjects[LoopTracker] = LiveObjects()


def _collect() -> Iterable[Metric]:
    runs = CounterMetricFamily(
        "naming_loop_runs",
        "Rounds (periodic loops) or batches (queue-driven workers) run, failed ones included.",
        labels=["loop"],
    )
    failures = CounterMetricFamily(
        "naming_loop_failures", "Rounds or batches that raised (the loop went on).", labels=["loop"]
    )
    duration = SummaryMetricFamily(
        "naming_loop_duration_seconds", "Time spent in rounds or batches.", labels=["loop"]
    )
    last_duration = GaugeMetricFamily(
        "naming_loop_last_duration_seconds", "How long the last round took.", labels=["loop"]
    )
    last_run = GaugeMetricFamily(
        "naming_loop_last_run_timestamp_seconds",
        "Wall-clock time the last round or batch ended (a stalled loop stops moving it).",
        labels=["loop"],
    )
    last_failure = GaugeMetricFamily(
        "naming_loop_last_failure_timestamp_seconds",
        "Wall-clock time of the last failed round or batch (0: none yet).",
        labels=["loop"],
    )
    by_name: dict[str, list[LoopTracker]] = {}
    for tracker in _LIVE.snapshot():
        by_name.setdefault(tracker.name, []).append(tracker)
    for name, trackers in sorted(by_name.items()):
        latest = max(trackers, key=lambda t: t.last_run_at)
        runs.add_metric([name], sum(t.runs for t in trackers))
        failures.add_metric([name], sum(t.failures for t in trackers))
        duration.add_metric(
            [name], sum(t.runs for t in trackers), sum(t.duration_sum_s for t in trackers)
        )
        last_duration.add_metric([name], latest.last_duration_s)
        last_run.add_metric([name], latest.last_run_at)
        last_failure.add_metric([name], max(t.last_failure_at for t in trackers))
    return [runs, failures, duration, last_duration, last_run, last_failure]


register_scrape_time(_collect)
