"""Client beats, beat expiry, empty-service auto-clean and active health checks.

A beat only touches ``last_beat`` here; it never writes a datum (unless it revives an unhealthy
instance). Expiry and health verdicts go back through the consistency service like any other
change, so they replicate and notify the same way.

Threads (all owned by :class:`HealthServices`, each a ``lib.loops.PeriodicLoop`` counted as
``naming_loop_*{loop=<name>}``, started by ``runnode``, stopped by ``stop()`` setting their one
shared Event and joining):
- ``beat-sweeper``: a tick every ``sweep_interval_s`` (0.25 s) judges the ephemeral instances whose
  deadline came due (``naming.expiry``) and marks them unhealthy or removes them (never a
  connection-bound one: ``naming.leases`` decides when those go), and holds the verdicts on
  watched sources' instances while self-preservation holds (``naming.preservation``, which it
  evaluates at most once a second); it owns the deadlines, and takes in changes from request
  threads (``BeatTable.changed``), the notifier thread (the registry listener) and the
  membership listener (``ownership_changed``);
- ``auto-clean``: every ``clean_period_s`` counts empty services and removes the long-empty ones;
- ``health-check``: every ``check_interval_s`` probes persistent instances (TCP/HTTP) through a
  bounded thread pool and submits only health *changes*; the time and result of each instance's
  last check stay in this member's :class:`CheckTable` (shown by the console).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from consistency.datum import DatumKey
from lib.errors import NamingError
from lib.loops import PeriodicLoop
from naming import audit
from naming.changes import Change, ClearValue, RemoveInstances, SetHealth
from naming.codec import EMPTY_INSTANCES
from naming.domain import (
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
    CheckType,
    Instance,
    InstanceKey,
    ServiceName,
)
from naming.expiry import (
    AFTER_S,
    KEEP,
    RECHECK_S,
    REMOVE,
    UNHEALTHY,
    ExpiryQueue,
    first_due,
    judge,
)
from naming.preservation import (
    HOLD_RECHECK_S,
    PreservationSettings,
    PreservationStatus,
    Renewals,
    SelfPreservation,
)
from naming.registry import Registry, ServiceView

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = DEFAULT_HEARTBEAT_TIMEOUT_MS / 1000.0

Submit = Callable[[DatumKey, Change], object]
IsResponsible = Callable[[ServiceName], bool]
Clock = Callable[[], float]


class BeatTable:
    """Last beat per ephemeral instance, in monotonic seconds. Written by request threads.

    A beat is one dict store here and nothing else. Deadlines are kept apart (``naming.expiry``)
    and compare with these times lazily when they come due. ``changed`` is the one other thing a
    request thread tells the expiry: an instance was (re)registered or edited, so its deadline is
    recomputed from its current ``preserved.*`` timeouts at the next tick.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._beats: dict[ServiceName, dict[InstanceKey, float]] = {}
        self._changed_lock = threading.Lock()
        # Bounded by the number of instances: a set, drained by the sweeper at every tick; kept
        # only while a sweeper runs (HealthServices turns it on when expiry is enabled).
        self._changed: set[tuple[ServiceName, InstanceKey]] = set()
        self.track_changes = False

    def touch(self, service: ServiceName, key: InstanceKey) -> None:
        per_service = self._beats.get(service)
        if per_service is None:
            per_service = self._beats.setdefault(service, {})
        per_service[key] = self._clock()

    def last(self, service: ServiceName, key: InstanceKey) -> float | None:
        per_service = self._beats.get(service)
        return None if per_service is None else per_service.get(key)

    def grant(self, service: ServiceName, key: InstanceKey, now: float) -> float:
        """The last beat of ``key``, recording ``now`` first if none is known (a grace: an
        instance never seen beating here gets a full timeout from now)."""
        per_service = self._beats.get(service)
        if per_service is None:
            per_service = self._beats.setdefault(service, {})
        return per_service.setdefault(key, now)

    def service_table(self, service: ServiceName) -> dict[InstanceKey, float]:
        """The live per-service dict, for the sweeper's own reads and grants within one tick."""
        per_service = self._beats.get(service)
        if per_service is None:
            per_service = self._beats.setdefault(service, {})
        return per_service

    def forget(self, service: ServiceName, key: InstanceKey) -> None:
        per_service = self._beats.get(service)
        if per_service is not None:
            per_service.pop(key, None)

    def service_beats(self, service: ServiceName) -> Mapping[InstanceKey, float]:
        return self._beats.get(service) or {}

    def restart_grace(self) -> None:
        """Forget every beat: each instance then gets a full timeout from the moment its
        deadline next comes due. A beat a request thread records meanwhile may be lost with the
        rest; it would get the same grace anyway."""
        self._beats.clear()

    def forget_services(self, services: Iterable[ServiceName]) -> None:
        for service in services:
            self._beats.pop(service, None)

    def retain(self, keep: Callable[[ServiceName], bool]) -> None:
        """Forget the beats of services ``keep`` rejects (ownership moved elsewhere)."""
        for service in [s for s in list(self._beats) if not keep(s)]:
            self._beats.pop(service, None)

    def changed(self, service: ServiceName, key: InstanceKey) -> None:
        if not self.track_changes:
            return
        with self._changed_lock:
            self._changed.add((service, key))

    def drain_changed(self) -> set[tuple[ServiceName, InstanceKey]]:
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        return changed


@dataclass(frozen=True, slots=True)
class LastCheck:
    at_ms: int  # wall clock, for display (the probe rounds themselves run on the monotonic one)
    ok: bool


class CheckTable:
    """The time and result of the last active check of each persistent instance, on the member
    that probes them (the Raft leader). Not replicated: a verdict that does not change health is
    not a write. Bounded: each round replaces the whole table with the instances it probed, so a
    member that stops probing (no longer leader) holds none. Written by the ``health-check``
    loop only; readers (the console) get the table of one round at a time."""

    def __init__(self) -> None:
        self._last: dict[tuple[ServiceName, InstanceKey], LastCheck] = {}

    def replace_round(self, checks: dict[tuple[ServiceName, InstanceKey], LastCheck]) -> None:
        self._last = checks

    def last(self, service: ServiceName, key: InstanceKey) -> LastCheck | None:
        return self._last.get((service, key))

    def __len__(self) -> int:
        return len(self._last)


# A gap of more than this many tick intervals (and at least PAUSE_MIN_S) between two ticks means
# this process did not run (SIGSTOP, a VM or container freeze, a swap storm): the beats it holds
# are stale, since the clients kept beating elsewhere meanwhile. The floor keeps a fine tick from
# taking a scheduling hiccup on a loaded box for a pause (each false pause grants every instance
# one more timeout); a real pause shorter than it cannot outlast a default heartbeat timeout.
PAUSE_SWEEPS = 3
PAUSE_MIN_S = 2.0


@dataclass
class HealthSettings:
    # Off only for benchmarks that register without beating (nothing expires then).
    sweep_enabled: bool = True
    # The expiry tick: how late past its deadline an instance may be marked or removed.
    sweep_interval_s: float = 0.25
    clean_initial_s: float = 50.0
    clean_period_s: float = 30.0
    clean_after_rounds: int = 3
    clean_enabled: bool = True
    check_interval_s: float = 5.0
    check_timeout_s: float = 2.0
    check_workers: int = 16
    check_networks: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    # Self-preservation of watched sources' instances (naming.preservation).
    preservation: PreservationSettings = field(default_factory=PreservationSettings)

    @property
    def pause_after_s(self) -> float:
        return max(PAUSE_SWEEPS * self.sweep_interval_s, PAUSE_MIN_S)


@dataclass
class CheckCounters:
    successes: int = 0
    failures: int = 0


@dataclass
class HealthStats:
    sweeps: int = 0  # expiry ticks (most find nothing due and do nothing)
    pauses: int = 0  # ticks that found this process had been paused (beat grace restarted)
    ownership_changes: int = 0  # beats of services that moved away forgotten (grace on return)
    regained_services: int = 0  # services newly owned at a tick: their beat grace restarted
    expiry_checks: int = 0  # deadlines that came due (an instance judged against its last beat)
    expired_unhealthy: int = 0
    expired_removed: int = 0
    cleaned_services: int = 0
    checks: int = 0
    check_verdicts: int = 0
    errors: int = 0
    last_error: str = ""
    counters: dict[tuple[ServiceName, InstanceKey], CheckCounters] = field(default_factory=dict)


class HealthServices:
    def __init__(
        self,
        registry: Registry,
        beats: BeatTable,
        submit: Submit,
        is_responsible: IsResponsible,
        settings: HealthSettings,
        clock: Clock = time.monotonic,
        is_prober: IsResponsible | None = None,
        checks: CheckTable | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        ownership_events: bool = False,
        renewals: Renewals | None = None,
    ) -> None:
        """``ownership_events``: the owner calls :meth:`ownership_changed` whenever
        ``is_responsible`` may answer differently (the Distro membership listener), so a tick
        walks every service only then; without it every tick asks about every service.
        ``renewals``: where ``NamingOperations.beat`` counts renewals (one of its own if None)."""
        self._registry = registry
        self._beats = beats
        self._submit = submit
        self._is_responsible = is_responsible
        # Active probes of persistent instances: the Raft leader in a cluster; beat expiry and
        # auto-clean: each service's Distro owner.
        self._is_prober = is_prober or is_responsible
        self.settings = settings
        self._clock = clock
        self.checks = checks if checks is not None else CheckTable()
        self._wall_ms = wall_ms
        self._stop = threading.Event()
        self.loops: list[PeriodicLoop] = []
        self._finalize: dict[ServiceName, int] = {}
        self._networks = [ipaddress.ip_network(n, strict=False) for n in settings.check_networks]
        self.stats = HealthStats()
        # Beat expiry state, owned by the beat-sweeper thread (or the test calling sweep_once).
        self._expiry = ExpiryQueue()
        # Renewals are counted by request threads; the verdict is this thread's (armed and
        # disarmed instances are watched and unwatched with their deadlines).
        self.renewals = renewals if renewals is not None else Renewals(settings.preservation, clock)
        self._preservation = SelfPreservation(self.renewals)
        self._last_sweep: float | None = None  # clock at the start of the last tick
        self._swept = False  # a first tick arms every owned service; later ones only changes
        self._owned: set[ServiceName] = set()  # services whose instances are armed here
        # Connection-bound instances of owned services, seen and left unarmed: they never
        # expire by beats (naming.leases). Kept so that counting them keeps the tick cheap.
        self._leased: dict[ServiceName, set[InstanceKey]] = {}
        self._known: set[ServiceName] = set()  # every service seen at the last tick
        self._ownership_events = ownership_events
        self._ownership_epoch = 0  # bumped by ownership_changed (any thread)
        self._scanned_epoch = 0
        # Services whose view changed since the last tick, from the registry's listener (the
        # notifier thread); a set, so bounded by the number of services.
        self._dirty: set[ServiceName] = set()
        self._dirty_lock = threading.Lock()
        if settings.sweep_enabled:
            registry.listeners.add("expiry", self._service_changed)
            beats.track_changes = True

    @property
    def armed_instances(self) -> int:
        """Ephemeral instances with a pending deadline on this member (those it expires)."""
        return len(self._expiry)

    @property
    def preservation(self) -> PreservationStatus:
        """Self-preservation as the last tick found it (any thread)."""
        return self.renewals.status

    @property
    def leased_instances(self) -> int:
        """Connection-bound instances of the services this member owns, left unarmed."""
        return sum(len(keys) for keys in list(self._leased.values()))

    def ownership_changed(self) -> None:
        """The Distro ownership map changed: the next tick re-reads who owns what."""
        self._ownership_epoch += 1

    def _service_changed(self, view: ServiceView) -> None:
        with self._dirty_lock:
            self._dirty.add(view.name)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        loops: list[PeriodicLoop] = []
        if self.settings.sweep_enabled:
            loops.append(
                PeriodicLoop(
                    "beat-sweeper",
                    self.sweep_once,
                    self.settings.sweep_interval_s,
                    owner="HealthServices",
                    stop_event=self._stop,
                    on_error=functools.partial(self._loop_failed, "beat-sweeper"),
                )
            )
        loops.append(
            PeriodicLoop(
                "health-check",
                self.check_once,
                self.settings.check_interval_s,
                owner="HealthServices",
                stop_event=self._stop,
                on_error=functools.partial(self._loop_failed, "health-check"),
            )
        )
        if self.settings.clean_enabled:
            loops.append(
                PeriodicLoop(
                    "auto-clean",
                    self.clean_once,
                    self.settings.clean_period_s,
                    owner="HealthServices",
                    first_delay_s=self.settings.clean_initial_s,
                    stop_event=self._stop,
                    on_error=functools.partial(self._loop_failed, "auto-clean"),
                )
            )
        for loop in loops:
            loop.start()
        self.loops = loops

    def stop(self) -> None:
        self._stop.set()
        for loop in self.loops:
            loop.join(timeout=5)

    def _loop_failed(self, name: str, exc: BaseException) -> None:
        """The loop helper counted and logged it; keep the JSON statistics' view as well."""
        self.stats.errors += 1
        self.stats.last_error = f"{name}: {type(exc).__name__}: {exc}"

    def _views(self) -> Iterable[ServiceView]:
        return [v for v in self._registry.views() if self._is_responsible(v.name)]

    def _probed_views(self) -> Iterable[ServiceView]:
        return [v for v in self._registry.views() if self._is_prober(v.name)]

    def _safe_submit(self, key: DatumKey, change: Change, reason: str) -> None:
        try:
            with audit.acting(via=audit.VIA_SYSTEM, reason=reason):
                self._submit(key, change)
        except NamingError as exc:  # e.g. no quorum: try again next round
            self.stats.errors += 1
            self.stats.last_error = f"submit {key}: {exc.message}"
            log.warning("health change for %s not applied: %s", key, exc.message)

    # -- beat expiry -------------------------------------------------------------------------

    def _paused(self, now: float) -> bool:
        """True when the time since the last tick started shows this process was not running.

        From its start rather than its end, so a pause in the middle of a tick (after it read
        the clock) is seen by the next one; a tick would have to take longer than the pause
        threshold to be taken for a pause (and then only grants grace)."""
        last, self._last_sweep = self._last_sweep, now
        if last is None:
            return False
        gap = now - last
        if gap <= self.settings.pause_after_s:
            return False
        self.stats.pauses += 1
        log.warning(
            "beat sweeper did not run for %.1f s (more than %.1f s): this process was paused;"
            " every instance gets a fresh heartbeat timeout before it can expire",
            gap,
            self.settings.pause_after_s,
        )
        return True

    def sweep_once(self) -> None:
        """One expiry tick: take in what changed, then judge only the deadlines that are due.

        With nothing changed and nothing due this is a few attribute reads: the work is
        proportional to the instances that expire (and to the changes since the last tick), not
        to the instances held."""
        self.stats.sweeps += 1
        now = self._clock()
        if self._paused(now):
            # Beats went to other members while we were stopped; ours are stale. Each deadline
            # that comes due now finds no beat and grants a full timeout from then; and the
            # renewals we missed must not count as missing.
            self._beats.restart_grace()
            self._preservation.restart(now)
        # Changed instances first: a registration to a service armed here is then armed once,
        # and its service's key count already agrees when the service is looked at below.
        self._rearm_changed(now)
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        epoch = self._ownership_epoch
        if not self._swept or not self._ownership_events or epoch != self._scanned_epoch:
            self._scanned_epoch = epoch
            self._rescan_ownership(dirty, now)
        else:
            for name in dirty:
                self._observe(name, self._registry.get(name), True, now)
        self._swept = True
        self._preservation.evaluate(now)
        if not self._registry.switches.healthCheckEnabled:
            return  # deadlines wait; when it is back on, each is judged on its real last beat
        next_due = self._expiry.next_due()
        if next_due is not None and next_due <= now:
            self._expire_due(now)

    def _rescan_ownership(self, dirty: set[ServiceName], now: float) -> None:
        """Ask about every service: who owns it now, and which services were regained."""
        views = {v.name: v for v in self._registry.views()}
        regained: list[ServiceName] = []
        for name in (self._known | self._owned) - views.keys():
            self._observe(name, None, True, now)
        for name, view in views.items():
            if self._observe(name, view, name in dirty, now):
                regained.append(name)
        for name in dirty - views.keys():
            self._observe(name, None, True, now)
        if regained:
            self.stats.regained_services += len(regained)
            log.info(
                "responsible again for %d services (e.g. %s): their heartbeat timeouts start now",
                len(regained),
                regained[0].grouped,
            )

    def _observe(
        self, name: ServiceName, view: ServiceView | None, changed: bool, now: float
    ) -> bool:
        """Bring one service's deadlines in line with its view and its owner; True if it was
        regained.

        A service this member owns now but did not at the last tick starts a full heartbeat
        timeout of its own. The beats we hold for it are stale: they went to the owner in
        between, and a beat a peer forwarded here while the two of us disagreed on ownership is
        recorded here even though we did not own the service then (the membership listener
        only forgets the services a change takes away). A service that did not exist at the
        last tick is not regained: its beats are all fresh, and forgetting them would give its
        instances more than their timeout. The first tick distrusts nothing older than this
        process."""
        if view is None:  # deleted: nothing left to expire
            self._known.discard(name)
            self._owned.discard(name)
            self._disarm_service(name)
            self._beats.forget_services((name,))
            return False
        owns = self._is_responsible(name)
        known = name in self._known
        self._known.add(name)
        regained = False
        if not owns:
            if name in self._owned:
                self._owned.discard(name)
                self._disarm_service(name)
            return False
        if name not in self._owned:
            self._owned.add(name)
            if known and self._swept:
                regained = True
                self._beats.forget_services((name,))
                self._disarm_service(name)
            self._arm_service(view, now, full=True)
        elif changed:
            self._arm_service(view, now, full=False)
        return regained

    def _disarm_service(self, name: ServiceName) -> None:
        self._expiry.disarm_service(name)
        self._leased.pop(name, None)
        self._preservation.unwatch_service(name)

    def _arm_service(self, view: ServiceView, now: float, full: bool) -> None:
        """Arm the instances of ``view`` that have no deadline, drop those that left it.

        The registry tells us which service changed, not which instances: comparing the key
        sets costs O(instances of the service), so it is skipped when the counts agree (the
        usual case: a health flag or a metadata edit). Instances registered through this
        member are armed by ``BeatTable.changed`` anyway; the count check catches the ones that
        arrive by Distro sync and the ones that left. Connection-bound instances are counted
        but never armed; one that turned connection-bound while armed is dropped when its
        deadline comes due (:meth:`_expire_due`)."""
        keys = view.ephemeral_keys()
        name = view.name
        armed = self._expiry.armed_keys(name)
        leased = self._leased.get(name)
        if not full and len(keys) == len(armed) + (len(leased) if leased else 0):
            return
        for key in list(armed - keys):
            self._expiry.disarm_key(name, key)
            self._beats.forget(name, key)
            self._preservation.unwatch(name, key)
        fresh = keys - armed
        if leased:
            leased &= keys
            fresh -= leased
        instances = view.ephemeral_map()
        for key in fresh:
            inst = instances.get(key)
            if inst is None:
                continue
            if inst.lease:
                self._leased.setdefault(name, set()).add(key)
                continue
            self._expiry.arm(name, key, first_due(inst, self._beats.grant(name, key, now)))
            self._preservation.watch(name, inst, now)
        if leased is not None and not leased:
            self._leased.pop(name, None)

    def _rearm_changed(self, now: float) -> None:
        """Instances (re)registered or edited through this member since the last tick: their
        deadline is recomputed from their timeouts as they are now (a ``preserved.*`` override
        may have shortened them). One not in the view yet is armed when its service changes."""
        for name, key in self._beats.drain_changed():
            if name not in self._owned:
                continue
            view = self._registry.get(name)
            inst = view.ephemeral_map().get(key) if view is not None else None
            if inst is None:
                continue
            if inst.lease:
                self._set_leased(name, key)
                continue
            leased = self._leased.get(name)
            if leased is not None:
                leased.discard(key)  # a v1 register took it back: beat-based again
            self._expiry.arm(name, key, first_due(inst, self._beats.grant(name, key, now)))
            self._preservation.watch(name, inst, now)  # its source or interval may have changed

    def _set_leased(self, name: ServiceName, key: InstanceKey) -> None:
        """Stop judging ``key`` by beats: it is bound to a connection now."""
        self._expiry.disarm_key(name, key)
        self._beats.forget(name, key)
        self._preservation.unwatch(name, key)
        self._leased.setdefault(name, set()).add(key)

    def _expire_due(self, now: float) -> None:
        """Judge each instance whose deadline came due against its real last beat; re-arm it
        (it beat since, or it was just marked), or submit its verdict. Per service, one lookup
        of its view, its beats and its owner; per instance, key lookups only."""
        unhealthy: dict[ServiceName, list[InstanceKey]] = {}
        removed: dict[ServiceName, list[InstanceKey]] = {}
        expiry = self._expiry
        preservation = self._preservation
        preserving = preservation.active
        for record, keys in expiry.pop_due(now).items():
            self.stats.expiry_checks += len(keys)
            name = record.name
            if not self._is_responsible(name):
                # Ownership moved and the tick that disarms the service has not run yet.
                for key in keys:
                    expiry.rearm(record, key, now + RECHECK_S)
                continue
            view = self._registry.get(name)
            instances = view.ephemeral_map() if view is not None else EMPTY_INSTANCES
            beats = self._beats.service_table(name)
            for key in keys:
                inst = instances.get(key)
                if inst is None:  # gone: deregistered, removed, or the service deleted
                    expiry.disarm(record, key)
                    beats.pop(key, None)
                    preservation.unwatch(name, key)
                    continue
                if inst.lease:  # re-registered over a connection since it was armed
                    expiry.disarm(record, key)
                    beats.pop(key, None)
                    preservation.unwatch(name, key)
                    self._leased.setdefault(name, set()).add(key)
                    continue
                last = beats.get(key)
                if last is None:  # never seen beating here: a full timeout from now
                    last = beats[key] = now
                if (
                    not inst.metadata
                    and inst.healthy
                    and not inst.marked
                    and now - last <= DEFAULT_TIMEOUT_S
                ):
                    # judge's common case inline (default timeouts, healthy, beat since).
                    expiry.rearm(record, key, last + DEFAULT_TIMEOUT_S + AFTER_S)
                    continue
                action, next_due = judge(inst, last, now)
                if preserving and action is not KEEP and preservation.holds(inst):
                    # Self-preservation: neither marked nor removed while renewals are short;
                    # looked at again soon, so a lift lets it go within a second.
                    preservation.held(name, key)
                    expiry.rearm(record, key, now + HOLD_RECHECK_S)
                    continue
                expiry.rearm(record, key, next_due)
                if action is UNHEALTHY:
                    unhealthy.setdefault(name, []).append(key)
                elif action is REMOVE:
                    removed.setdefault(name, []).append(key)
        for name, keys in unhealthy.items():
            self.stats.expired_unhealthy += len(keys)
            self._safe_submit(
                DatumKey.instances(name, True),
                SetHealth(tuple((k, False) for k in keys)),
                audit.HEARTBEAT_EXPIRY,
            )
        for name, keys in removed.items():
            self.stats.expired_removed += len(keys)
            self._safe_submit(
                DatumKey.instances(name, True), RemoveInstances(tuple(keys)), audit.HEARTBEAT_EXPIRY
            )

    # -- empty-service auto-clean -------------------------------------------------------------

    def clean_once(self) -> None:
        seen: set[ServiceName] = set()
        for view in self._views():
            seen.add(view.name)
            if view.instance_count:
                self._finalize.pop(view.name, None)
                continue
            count = self._finalize.get(view.name, 0) + 1
            self._finalize[view.name] = count
            if count > self.settings.clean_after_rounds:
                self._finalize.pop(view.name, None)
                self.stats.cleaned_services += 1
                log.info("auto-clean removes empty service %s", view.name)
                for key in (
                    DatumKey.instances(view.name, True),
                    DatumKey.instances(view.name, False),
                    DatumKey.meta(view.name),
                ):
                    self._safe_submit(key, ClearValue(), audit.AUTO_CLEAN)
        for name in [n for n in self._finalize if n not in seen]:
            self._finalize.pop(name, None)

    # -- active health checks (persistent instances) -----------------------------------------

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            # Host names are probed only when every network is allowed (we do not resolve here).
            return any(n.prefixlen == 0 for n in self._networks)
        return any(address in n for n in self._networks)

    def check_once(self) -> None:
        if not self._registry.switches.healthCheckEnabled:
            return
        jobs: list[tuple[ServiceView, Instance, CheckType, int, str, int]] = []
        for view in self._probed_views():
            for inst in view.persistent:
                if inst.marked:
                    continue
                cfg = view.cluster_config(inst.cluster)
                checker = cfg.health_checker
                if checker.type not in (CheckType.TCP, CheckType.HTTP):
                    continue
                if not self._allowed(inst.ip):
                    continue
                port = inst.port if cfg.use_instance_port else cfg.check_port
                jobs.append((view, inst, checker.type, port, checker.path, checker.expected_code))
        if not jobs:
            self.checks.replace_round({})
            return
        with ThreadPoolExecutor(
            max_workers=self.settings.check_workers, thread_name_prefix="probe"
        ) as pool:
            results = list(pool.map(lambda job: self._probe(*job[1:]), jobs))
        checked_ms = self._wall_ms()
        self.checks.replace_round(
            {
                (view.name, inst.key): LastCheck(checked_ms, ok)
                for (view, inst, *_), ok in zip(jobs, results, strict=True)
            }
        )
        verdicts: dict[ServiceName, list[tuple[InstanceKey, bool]]] = {}
        threshold = max(1, self._registry.switches.checkTimes)
        live = set()
        for (view, inst, *_), ok in zip(jobs, results, strict=True):
            self.stats.checks += 1
            counter_key = (view.name, inst.key)
            live.add(counter_key)
            counters = self.stats.counters.setdefault(counter_key, CheckCounters())
            if ok:
                counters.successes += 1
                counters.failures = 0
                if counters.successes >= threshold and not inst.healthy:
                    verdicts.setdefault(view.name, []).append((inst.key, True))
            else:
                counters.failures += 1
                counters.successes = 0
                if counters.failures >= threshold and inst.healthy:
                    verdicts.setdefault(view.name, []).append((inst.key, False))
        for key in [k for k in self.stats.counters if k not in live]:
            self.stats.counters.pop(key, None)
        for name, changes in verdicts.items():
            self.stats.check_verdicts += len(changes)
            self._safe_submit(
                DatumKey.instances(name, False), SetHealth(tuple(changes)), audit.HEALTH_CHECK
            )

    def _probe(self, inst: Instance, kind: CheckType, port: int, path: str, expected: int) -> bool:
        timeout = self.settings.check_timeout_s
        try:
            if kind is CheckType.TCP:
                with socket.create_connection((inst.ip, port), timeout=timeout):
                    return True
            host = f"[{inst.ip}]" if ":" in inst.ip else inst.ip
            url = f"http://{host}:{port}/{path.lstrip('/')}"
            request = urllib.request.Request(url, headers={"User-Agent": "Nacos-Server"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return int(response.status) == expected
            except urllib.error.HTTPError as exc:
                return int(exc.code) == expected
        except (OSError, ValueError):
            return False
