"""An isolated, counted listener list (hashicorp/raft ``observer.go``: listeners cannot take the
node down). Each listener's exception is logged (rate-limited per listener) and counted, on the
:class:`ListenerStats` object: plain integers, read by ``operator/metrics`` JSON and, at scrape
time, exported as ``naming_listener_calls_total`` / ``naming_listener_failures_total``
``{source, listener}`` at ``GET /metrics``; it never stops the caller or the listeners after it.

Threads: ``add`` is called while the owner is being wired (before its threads start); ``call``
from whichever thread delivers (one at a time per list in every user here: the notifier under
its delivery lock, the registry on the notifier's delivery, membership on the thread that saw a
change). The list is copied on write, so a late ``add`` never breaks a delivery in progress.

Bottom layer: imports nothing from the project.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, Metric

from lib.counters import LiveObjects, register_scrape_time
from lib.ratelimit import LogThrottle

log = logging.getLogger(__name__)

T = TypeVar("T")

LOG_EVERY_S = 60.0


@dataclass(slots=True)
class ListenerStats:
    name: str
    calls: int = 0
    failures: int = 0
    last_error: str = ""
    _log_throttle: LogThrottle = field(default_factory=lambda: LogThrottle(LOG_EVERY_S), repr=False)


class ListenerList(Generic[T]):
    """Listeners of one ``source`` (e.g. ``notifier``), called in the order they were added."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._entries: tuple[tuple[Callable[[T], object], ListenerStats], ...] = ()
        _LIVE.add(self)

    def add(self, name: str, listener: Callable[[T], object]) -> ListenerStats:
        stats = ListenerStats(name)
        self._entries = (*self._entries, (listener, stats))
        return stats

    @property
    def stats(self) -> list[ListenerStats]:
        return [stats for _, stats in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def call(self, event: T, about: object = None) -> int:
        """Deliver ``event`` to every listener; returns how many failed. ``about`` names the
        event in the failure log (e.g. the datum key)."""
        failed = 0
        for listener, stats in self._entries:
            stats.calls += 1
            try:
                listener(event)
            except Exception as exc:  # isolation is the point: count, log, go on
                failed += 1
                stats.failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._log(stats, exc, event if about is None else about)
        return failed

    def _log(self, stats: ListenerStats, exc: Exception, about: object) -> None:
        held = stats._log_throttle.admit()
        if held is None:
            return
        more = f" ({held} more failures since the last report)" if held else ""
        log.error(
            "%s listener %s failed on %s%s", self.source, stats.name, about, more, exc_info=exc
        )


_LIVE: LiveObjects[ListenerList[Any]] = LiveObjects()


def _collect() -> Iterable[Metric]:
    calls = CounterMetricFamily(
        "naming_listener_calls",
        "Calls of one listener (source: the list it is on).",
        labels=["source", "listener"],
    )
    failures = CounterMetricFamily(
        "naming_listener_failures",
        "Calls of one listener that raised (isolated: the others and the caller went on).",
        labels=["source", "listener"],
    )
    totals: dict[tuple[str, str], list[int]] = {}
    for listeners in _LIVE.snapshot():
        for stats in listeners.stats:
            total = totals.setdefault((listeners.source, stats.name), [0, 0])
            total[0] += stats.calls
            total[1] += stats.failures
    for (source, name), (called, failed) in sorted(totals.items()):
        calls.add_metric([source, name], called)
        failures.add_metric([source, name], failed)
    return [calls, failures]


register_scrape_time(_collect)
