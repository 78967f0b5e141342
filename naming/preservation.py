"""Self-preservation: stop expiring leases when too few of them are being renewed.

Eureka's rule (``PeerAwareInstanceRegistryImpl.isLeaseExpirationEnabled``): when the renewals
counted in the last full minute fall to ``renewalPercentThreshold`` (85 %) of those expected or
below, a mass of leases lapsing at once is more likely a network problem between the clients and
the server than a mass of dead clients, so the server stops evicting until renewals recover,
rather than deregistering a fleet that is still running. Here it applies to the instances whose
``preserved.source`` metadata names a configured source (default ``eureka``); Nacos instances
(v1 beats, gRPC leases) carry none and are never held, so Nacos semantics do not change.

The arithmetic, over one window of ``window_s`` (60 s, Eureka's minute):

- **expected** E = Σ over the counted instances this member owns, and owned and knew for the
  whole window, of ``window_s / interval`` (``interval`` = ``preserved.heart.beat.interval``).
  An instance registered (or a service taken over, or a process resumed) in the middle of a
  window counts from the next full one: a fresh member, a scale-up or a change of owners does
  not look like missing renewals (a part-window share would: a beat more or less at its edges is
  a large error on a few seconds). And E follows the instances actually registered: when the
  silent ones are gone it drops, and self-preservation lifts (Eureka's E only follows
  registrations and cancels and a 15-minute recompute, and gets stuck: Netflix/eureka#1267,
  #1459).
- **renewals** R = Σ over the same instances of the beats counted in the window, each at most
  ``ceil(expected) + 1``: a client renewing faster than it declared cannot stand in for one that
  stopped (Netflix/eureka#1127: py-eureka-client at 5 s counts 6x in Eureka), and one beat that
  slips across a window edge is not lost. Beats of instances not counted here (deregistered,
  another source, another member's) do not count.
- **holds** iff R ≤ floor(E x ``threshold``) and that is at least 1 (Eureka's floor: the
  threshold is whole renewals). With 10 instances renewing every 30 s (E = 20), one dead leaves
  R = 18 > 17: expiry goes on; two dead (R = 16): held. As in Eureka, a small fleet is held by
  few deaths: one instance of one, or one of two, stopping is held until it comes back or is
  deregistered (turn it off with ``NAMING_SELF_PRESERVATION=false`` where that is unwanted).

While it holds, the expiry neither marks those instances unhealthy nor removes them: Eureka keeps
them listed and UP, and marking them unhealthy would take them out of Nacos and Eureka answers
alike (the Eureka facade shows unhealthy as DOWN), the mass deregistration this exists to avoid.
A verdict held is looked at again every second, so the lapsed instances go within a second of
the lift (all at once: Eureka evicts at most 15 % per minute; ours follow their own deadlines).

Everything here is member-local and never replicated, like beats: renewals are counted where
they are handled (the service's Distro owner: beats are forwarded there) and judged there by the
same member's expiry. Replicated apply never reads it.

Threads: :class:`Renewals` is written by request threads (``NamingOperations.beat``) under its
own lock and read by the ``beat-sweeper``; :class:`SelfPreservation` belongs to the
``beat-sweeper`` thread (``naming.health.HealthServices``), which evaluates it at most once a
second and publishes a :class:`PreservationStatus` (an immutable value) for every other reader.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from naming.domain import Instance, InstanceKey, PreservedKey, ServiceName

log = logging.getLogger(__name__)

# Read on every beat of an instance with metadata: a plain str key (an enum key hashes slower).
SOURCE_KEY: str = PreservedKey.SOURCE.value
# The sweeper re-evaluates at most this often (the work is O(counted instances owned here)).
EVALUATE_EVERY_S = 1.0
# A held verdict is looked at again this soon, so a lift releases it within a second.
HOLD_RECHECK_S = 1.0
# Engage/lift log lines: at most one per this many seconds; the state is logged eventually.
LOG_EVERY_S = 60.0
# An interval below this (or none parseable) counts as this: no division by zero, no absurd E.
MIN_INTERVAL_S = 0.1

RenewalKey = tuple[ServiceName, InstanceKey]


@dataclass(frozen=True)
class PreservationSettings:
    enabled: bool = True
    # Eureka's renewalPercentThreshold: hold when renewals ≤ expected x threshold.
    threshold: float = 0.85
    # ``preserved.source`` values whose instances are watched and held.
    sources: frozenset[str] = frozenset({"eureka"})
    # The measuring window (Eureka's minute). Keep it well under the delete timeout of the
    # instances it protects (Eureka: 60 s against 180 s), or they go before it can engage.
    window_s: float = 60.0


@dataclass(frozen=True)
class PreservationStatus:
    """What the last evaluation found (renewals and expected in the last full window)."""

    enabled: bool
    active: bool
    threshold: float
    window_s: float
    sources: tuple[str, ...]
    renewals: int = 0
    expected: float = 0.0
    limit: int = 0  # floor(expected x threshold): it holds while renewals <= limit (and limit >= 1)
    instances: int = 0  # counted instances owned here (those E is made of)
    held_instances: int = 0  # of those, lapsed and kept only by self-preservation now
    held_verdicts: int = 0  # expiry verdicts held since start (an instance each second)
    engaged: int = 0  # times it engaged since start
    renewals_total: int = 0  # counted renewals since start
    active_since: float | None = None  # monotonic seconds

    def as_json(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "active": self.active,
            "threshold": self.threshold,
            "windowSeconds": self.window_s,
            "sources": list(self.sources),
            "renewalsLastWindow": self.renewals,
            "expectedLastWindow": round(self.expected, 3),
            "thresholdRenewals": self.limit,
            "instances": self.instances,
            "heldInstances": self.held_instances,
            "heldVerdicts": self.held_verdicts,
            "engaged": self.engaged,
            "renewalsTotal": self.renewals_total,
        }


class Renewals:
    """Renewals (successful beats) per counted instance per window, on this member.

    Written by request threads (:meth:`renewed`, under a lock: a lost increment would look like
    a missed renewal), read by the sweeper. Bounded: the counts of the current and the previous
    window only, one entry per instance that beat in them. ``status`` is the latest
    :class:`PreservationStatus` the sweeper published (a reference swap; any thread reads it).
    """

    def __init__(
        self,
        settings: PreservationSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings = settings or PreservationSettings()
        # No sources when off: every beat then stops at the first test in renewed().
        self.sources = settings.sources if settings.enabled else frozenset()
        self._clock = clock
        self.origin = clock()  # windows are [origin + k x window, origin + (k + 1) x window)
        self._lock = threading.Lock()
        self._windows: dict[int, dict[RenewalKey, int]] = {}
        self.total = 0
        self.status = PreservationStatus(
            enabled=settings.enabled,
            active=False,
            threshold=settings.threshold,
            window_s=settings.window_s,
            sources=tuple(sorted(settings.sources)),
        )

    def counts(self, inst: Instance) -> bool:
        """Whether ``inst``'s renewals are watched (its ``preserved.source`` is configured)."""
        metadata = inst.metadata
        return bool(metadata) and metadata.get(SOURCE_KEY) in self.sources

    def window_of(self, now: float) -> int:
        return int((now - self.origin) // self.settings.window_s)

    def bounds(self, window: int) -> tuple[float, float]:
        start = self.origin + window * self.settings.window_s
        return start, start + self.settings.window_s

    def renewed(self, service: ServiceName, inst: Instance) -> None:
        """A beat renewed ``inst`` on this member (it was found, beat-based, ephemeral)."""
        metadata = inst.metadata
        if not metadata or metadata.get(SOURCE_KEY) not in self.sources:
            return  # Nacos instances: one falsy test, or one dict lookup
        window = self.window_of(self._clock())
        key = (service, inst.key)
        with self._lock:
            counts = self._windows.get(window)
            if counts is None:
                counts = self._windows[window] = {}
                for old in [w for w in self._windows if w < window - 1]:
                    del self._windows[old]
            counts[key] = counts.get(key, 0) + 1
            self.total += 1

    def window_counts(self, window: int) -> Mapping[RenewalKey, int]:
        """The counts of ``window`` (read-only use: a straggling beat may still add one)."""
        with self._lock:
            return self._windows.get(window) or {}


@dataclass
class _Watched:
    rate: float  # expected renewals per full window
    since: float  # monotonic: when this member started counting it


def expected_in(rate: float, since: float, start: float) -> float:
    """Renewals expected of one instance in the window from ``start``, known here since
    ``since``: all of them if it was known for the whole window, else none."""
    return rate if since <= start else 0.0


def renewal_cap(expected: float) -> int:
    """The most renewals of one instance counted in a window: one over its expected share."""
    return math.ceil(expected) + 1


def interval_s(inst: Instance) -> float:
    return max(inst.heartbeat_interval_ms / 1000.0, MIN_INTERVAL_S)


@dataclass
class SelfPreservation:
    """The sweeper's side: which counted instances this member owns, since when, and the verdict.

    Owned by the ``beat-sweeper`` thread, which tells it what it arms and disarms
    (:meth:`watch`, :meth:`unwatch`: O(1) per change, nothing per tick),
    :meth:`evaluate` once a tick (it re-computes at most every second), :meth:`holds` and
    :meth:`held` from the expiry's verdicts."""

    renewals: Renewals
    _services: dict[ServiceName, dict[InstanceKey, _Watched]] = field(default_factory=dict)
    _held: set[RenewalKey] = field(default_factory=set)
    _next_evaluation: float = float("-inf")
    _held_verdicts: int = 0
    _engaged: int = 0
    _active_since: float | None = None
    _logged_active: bool = False
    _last_log: float = float("-inf")
    _unlogged: int = 0

    @property
    def status(self) -> PreservationStatus:
        return self.renewals.status

    @property
    def active(self) -> bool:
        return self.renewals.status.active

    def watch(self, name: ServiceName, inst: Instance, now: float) -> None:
        """The expiry armed ``inst`` (new here, or changed): count it if its source is watched,
        from ``now`` if it is new here; forget it if it is not (any more)."""
        if inst.lease or not self.renewals.counts(inst):
            if self._services:  # (nothing to forget while no instance is watched)
                self.unwatch(name, inst.key)
            return
        watched = self._services.get(name)
        if watched is None:
            watched = self._services[name] = {}
        key = inst.key
        rate = self.renewals.settings.window_s / interval_s(inst)
        entry = watched.get(key)
        if entry is None:
            watched[key] = _Watched(rate, now)
        else:
            entry.rate = rate

    def unwatch(self, name: ServiceName, key: InstanceKey) -> None:
        """The expiry disarmed it: gone, bound to a connection, or its service moved away."""
        if not self._services:
            return
        watched = self._services.get(name)
        if watched is not None and watched.pop(key, None) is not None:
            self._held.discard((name, key))
            if not watched:
                del self._services[name]

    def unwatch_service(self, name: ServiceName) -> None:
        watched = self._services.pop(name, None)
        if watched and self._held:
            self._held = {k for k in self._held if k[0] != name}

    def restart(self, now: float) -> None:
        """Count every instance from ``now`` (this process was paused: it missed renewals)."""
        for watched in self._services.values():
            for entry in watched.values():
                entry.since = now

    def holds(self, inst: Instance) -> bool:
        """Whether an expiry verdict on ``inst`` is held now."""
        return self.renewals.status.active and self.renewals.counts(inst)

    def held(self, name: ServiceName, key: InstanceKey) -> None:
        self._held_verdicts += 1
        self._held.add((name, key))

    def evaluate(self, now: float) -> bool:
        """Re-compute R and E over the last full window (at most once a second); True while
        self-preservation holds."""
        renewals = self.renewals
        if not renewals.sources or now < self._next_evaluation:
            return renewals.status.active
        self._next_evaluation = now + EVALUATE_EVERY_S
        window = renewals.window_of(now) - 1
        got, expected = 0, 0.0
        instances = sum(len(watched) for watched in self._services.values())
        if window >= 0:  # no full window measured yet: nothing to judge by
            start, _ = renewals.bounds(window)
            counts = renewals.window_counts(window)
            for name, watched in self._services.items():
                for key, entry in watched.items():
                    share = expected_in(entry.rate, entry.since, start)
                    if share <= 0.0:
                        continue
                    expected += share
                    n = counts.get((name, key))
                    if n:
                        got += min(n, renewal_cap(share))
        settings = renewals.settings
        # Eureka's floor(E x threshold), and never on less than one renewal's worth.
        limit = math.floor(expected * settings.threshold + 1e-9)
        active = limit >= 1 and got <= limit
        was = renewals.status.active
        if active and not was:
            self._engaged += 1
            self._active_since = now
        elif not active and was:
            self._active_since = None
            self._held.clear()
        renewals.status = PreservationStatus(
            enabled=settings.enabled,
            active=active,
            threshold=settings.threshold,
            window_s=settings.window_s,
            sources=renewals.status.sources,
            renewals=got,
            expected=expected,
            limit=limit,
            instances=instances,
            held_instances=len(self._held),
            held_verdicts=self._held_verdicts,
            engaged=self._engaged,
            renewals_total=renewals.total,
            active_since=self._active_since,
        )
        if active != was:
            self._unlogged += 1
        self._log(now)
        return active

    def _log(self, now: float) -> None:
        """One line when it engages and when it lifts, at most one a minute: a state that
        flaps is logged with how many changes were not, and the last state always is."""
        status = self.renewals.status
        if status.active == self._logged_active or now - self._last_log < LOG_EVERY_S:
            return
        skipped = self._unlogged - 1
        note = f" ({skipped} more changes since the last line)" if skipped > 0 else ""
        self._logged_active, self._last_log, self._unlogged = status.active, now, 0
        measured = (
            f"{status.renewals} renewals in the last {status.window_s:g} s of"
            f" {status.expected:.0f} expected (threshold {status.limit})"
        )
        sources = ", ".join(status.sources)
        if status.active:
            log.warning(
                "EMERGENCY: self-preservation engaged: %s: lapsed instances of %s are kept"
                " registered and healthy until renewals recover; they may no longer be running%s",
                measured,
                sources,
                note,
            )
        else:
            log.warning(
                "self-preservation lifted: %s: lapsed instances of %s expire again%s",
                measured,
                sources,
                note,
            )
