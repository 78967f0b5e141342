"""Client beats, beat expiry, empty-service auto-clean and active health checks.

A beat only touches ``last_beat`` here; it never writes a datum (unless it revives an unhealthy
instance). Expiry and health verdicts go back through the consistency service like any other
change, so they replicate and notify the same way.

Threads (all owned by :class:`HealthServices`, each a ``lib.loops.PeriodicLoop`` counted as
``naming_loop_*{loop=<name>}``, started by ``runnode``, stopped by ``stop()`` setting their one
shared Event and joining):
- ``beat-sweeper``: every ``sweep_interval_s`` marks ephemeral instances unhealthy or removes them;
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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from consistency.datum import DatumKey
from lib.errors import NamingError
from lib.loops import PeriodicLoop
from naming import audit
from naming.changes import Change, ClearValue, RemoveInstances, SetHealth
from naming.domain import CheckType, Instance, InstanceKey, ServiceName
from naming.registry import Registry, ServiceView

log = logging.getLogger(__name__)

Submit = Callable[[DatumKey, Change], object]
IsResponsible = Callable[[ServiceName], bool]
Clock = Callable[[], float]


class BeatTable:
    """Last beat per ephemeral instance, in monotonic seconds. Written by request threads."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._beats: dict[ServiceName, dict[InstanceKey, float]] = {}

    def touch(self, service: ServiceName, key: InstanceKey) -> None:
        per_service = self._beats.get(service)
        if per_service is None:
            per_service = self._beats.setdefault(service, {})
        per_service[key] = self._clock()

    def forget(self, service: ServiceName, key: InstanceKey) -> None:
        per_service = self._beats.get(service)
        if per_service is not None:
            per_service.pop(key, None)

    def service_beats(self, service: ServiceName) -> dict[InstanceKey, float]:
        return self._beats.setdefault(service, {})

    def restart_grace(self) -> None:
        """Forget every beat: each instance is then treated as seen at the next sweep. A beat
        a request thread records meanwhile may be lost with the rest; it would get the same
        grace anyway."""
        self._beats.clear()

    def forget_services(self, services: Iterable[ServiceName]) -> None:
        for service in services:
            self._beats.pop(service, None)

    def retain(self, keep: Callable[[ServiceName], bool]) -> None:
        """Forget the beats of services ``keep`` rejects (ownership moved elsewhere)."""
        for service in [s for s in list(self._beats) if not keep(s)]:
            self._beats.pop(service, None)

    def prune(self, live: Callable[[ServiceName], ServiceView | None]) -> None:
        for service in list(self._beats):
            view = live(service)
            if view is None:
                self._beats.pop(service, None)
                continue
            present = {i.key for i in view.ephemeral}
            beats = self._beats.get(service, {})
            # list(): request threads insert beats while we walk the keys.
            for key in [k for k in list(beats) if k not in present]:
                beats.pop(key, None)


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


@dataclass(frozen=True, slots=True)
class Expiry:
    unhealthy: tuple[InstanceKey, ...]
    removed: tuple[InstanceKey, ...]


def find_expired(view: ServiceView, beats: dict[InstanceKey, float], now: float) -> Expiry:
    """Pure decision for one service; instances never seen beating get ``now`` (a grace period).

    The grace matters after a restart or an ownership change: the new owner has not seen the
    beats that went elsewhere, so it counts a full timeout of its own (Nacos #1873, #7697).
    """
    unhealthy: list[InstanceKey] = []
    removed: list[InstanceKey] = []
    for inst in view.ephemeral:
        if inst.marked:
            continue
        key = inst.key
        last = beats.get(key)
        if last is None:
            beats[key] = now
            continue
        idle_ms = (now - last) * 1000.0
        if idle_ms > inst.ip_delete_timeout_ms:
            removed.append(key)
        elif idle_ms > inst.heartbeat_timeout_ms and inst.healthy:
            unhealthy.append(key)
    return Expiry(tuple(unhealthy), tuple(removed))


# A gap of more than this many sweep intervals between two sweeps means this process did not run
# (SIGSTOP, a VM or container freeze, a swap storm): the beats it holds are stale, since the
# clients kept beating elsewhere meanwhile.
PAUSE_SWEEPS = 3


@dataclass
class HealthSettings:
    # Off only for benchmarks that register without beating (nothing expires then).
    sweep_enabled: bool = True
    sweep_interval_s: float = 5.0
    clean_initial_s: float = 50.0
    clean_period_s: float = 30.0
    clean_after_rounds: int = 3
    clean_enabled: bool = True
    check_interval_s: float = 5.0
    check_timeout_s: float = 2.0
    check_workers: int = 16
    check_networks: tuple[str, ...] = ("0.0.0.0/0", "::/0")


@dataclass
class CheckCounters:
    successes: int = 0
    failures: int = 0


@dataclass
class HealthStats:
    sweeps: int = 0
    pauses: int = 0  # sweeps that found this process had been paused (beat grace restarted)
    ownership_changes: int = 0  # beats of services that moved away forgotten (grace on return)
    regained_services: int = 0  # services newly owned at a sweep: their beat grace restarted
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
    ) -> None:
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
        self._last_sweep: float | None = None  # clock at the start of the last sweep
        self._owned: set[ServiceName] | None = None  # services the last sweep was responsible for
        self._known: set[ServiceName] | None = None  # every service the last sweep saw

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
        """True when the time since the last sweep started shows this process was not running.

        From its start rather than its end, so a pause in the middle of a sweep (after it read
        the clock) is seen by the next one; a sweep would have to take more than
        ``PAUSE_SWEEPS - 1`` intervals to be taken for a pause (and then only grants grace)."""
        last, self._last_sweep = self._last_sweep, now
        if last is None:
            return False
        gap = now - last
        if gap <= PAUSE_SWEEPS * self.settings.sweep_interval_s:
            return False
        self.stats.pauses += 1
        log.warning(
            "beat sweeper did not run for %.1f s (more than %d sweep intervals): this process was"
            " paused; every instance gets a fresh heartbeat timeout before it can expire",
            gap,
            PAUSE_SWEEPS,
        )
        return True

    def sweep_once(self) -> None:
        self.stats.sweeps += 1
        now = self._clock()
        if self._paused(now):
            # Beats went to other members while we were stopped; ours are stale.
            self._beats.restart_grace()
        every = self._registry.views()
        views = [v for v in every if self._is_responsible(v.name)]
        self._restart_grace_of_regained({v.name for v in views}, {v.name for v in every})
        if not self._registry.switches.healthCheckEnabled:
            return
        for view in views:
            if not view.ephemeral:
                continue
            expiry = find_expired(view, self._beats.service_beats(view.name), now)
            key = DatumKey.instances(view.name, True)
            if expiry.unhealthy:
                self.stats.expired_unhealthy += len(expiry.unhealthy)
                self._safe_submit(
                    key,
                    SetHealth(tuple((k, False) for k in expiry.unhealthy)),
                    audit.HEARTBEAT_EXPIRY,
                )
            if expiry.removed:
                self.stats.expired_removed += len(expiry.removed)
                self._safe_submit(key, RemoveInstances(expiry.removed), audit.HEARTBEAT_EXPIRY)
        self._beats.prune(self._registry.get)

    def _restart_grace_of_regained(self, owned: set[ServiceName], known: set[ServiceName]) -> None:
        """Services this member owns now but did not at the last sweep start a full heartbeat
        timeout of their own. The beats we hold for them are stale: they went to the owner in
        between, and a beat a peer forwarded here while the two of us disagreed on ownership
        is recorded here even though we did not own the service then (the membership
        listener only forgets the services a change takes away). A service that did not exist
        at the last sweep is not regained: its beats are all fresh, and forgetting them would
        give its instances up to one sweep interval more than their timeout."""
        previous, self._owned = self._owned, owned
        known_before, self._known = self._known, known
        if previous is None or known_before is None:
            return  # the first sweep: nothing older than this process to distrust
        regained = (owned & known_before) - previous
        if regained:
            self.stats.regained_services += len(regained)
            self._beats.forget_services(regained)
            log.info(
                "responsible again for %d services (e.g. %s): their heartbeat timeouts start now",
                len(regained),
                next(iter(regained)).grouped,
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
