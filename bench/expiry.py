"""What deadline-driven beat expiry costs, in one process (issue #11 item 4).

An in-memory Distro store and registry hold ``--instances`` ephemeral instances (default
100,000 in 100 services); a ``HealthServices`` runs its ticks by hand on a fake clock (no
threads, no HTTP). Measured in CPU time (``time.process_time``: the box is shared, wall
clock is not the work done), medians of ``--rounds``:

- a beat's part: ``BeatTable.touch`` (all a beat does for expiry) and ``BeatTable.changed``
  (what a registration or edit adds);
- the first tick, which arms every instance (as after a start or a takeover), the expiry
  structure's memory per instance, and a tick after an ownership change;
- a tick where nothing is due (the steady state between deadlines);
- a tick where 1 % of the instances come due and beat since (re-armed: what keeping live
  instances costs), and one where 1 % come due silent and are marked unhealthy, with the
  submit replaced by a no-op (the structure's own cost) and with the real submit (the SetHealth
  writes, the registry rebuilds: what the write path charges for the verdicts);
- for comparison, one walk over every instance as the 5 s sweeper before it did each round.

    .venv/bin/python bench/expiry.py [--instances 100000] [--services 100] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consistency.datum import Datum, DatumKey  # noqa: E402
from consistency.notifier import Notifier  # noqa: E402
from distro.store import DistroStore  # noqa: E402
from naming.changes import Change  # noqa: E402
from naming.codec import DATUM_CODEC, instance_set  # noqa: E402
from naming.domain import Instance, InstanceKey, ServiceName  # noqa: E402
from naming.expiry import ExpiryQueue  # noqa: E402
from naming.health import BeatTable, HealthServices, HealthSettings  # noqa: E402
from naming.registry import Registry, ServiceView  # noqa: E402

TIMEOUT_S = 15.0  # the default heartbeat timeout


class Setup:
    def __init__(self, instances: int, services: int) -> None:
        self.clock = [1000.0]
        self.notifier = Notifier()
        self.store = DistroStore(self.notifier, DATUM_CODEC)
        self.registry = Registry(lambda k: None if (d := self.store.get(k)) is None else d.value)
        self.notifier.add_listener("registry", self.registry.on_datum)
        self.beats = BeatTable(clock=lambda: self.clock[0])
        self.real_submit = True
        self.names = [ServiceName("public", f"DEFAULT_GROUP@@bench-{s}") for s in range(services)]
        self.keys: list[tuple[ServiceName, InstanceKey]] = []
        per = instances // services
        for s, name in enumerate(self.names):
            members = [Instance(f"10.{s}.{n // 250}.{n % 250}", 8080) for n in range(per)]
            datum_key = DatumKey.instances(name, True)
            self.store.apply_remote(Datum(datum_key, instance_set(members), 1))
            self.keys += [(name, m.key) for m in members]
        self.notifier.drain()
        for name, key in self.keys:
            self.beats.touch(name, key)
        self.health = HealthServices(
            self.registry,
            self.beats,
            self._submit,
            lambda _service: True,
            HealthSettings(sweep_interval_s=0.25),
            clock=lambda: self.clock[0],
            ownership_events=True,  # as the node runs it
        )

    def _submit(self, key: DatumKey, change: Change) -> object:
        if not self.real_submit:
            return None
        applied = self.store.submit(key, change, 5.0)
        self.notifier.drain()
        return applied

    def tick(self, dt: float = 0.25) -> float:
        self.clock[0] += dt
        started = time.process_time()
        self.health.sweep_once()
        return time.process_time() - started

    def rearm_all(self) -> None:
        """Between measurements: everyone beats now and comes due a timeout from now."""
        self.clock[0] += 1.0
        for name, key in self.keys:
            self.beats.touch(name, key)
            self.health._expiry.arm(name, key, self.clock[0] + TIMEOUT_S)
        self.health._expiry._compact()  # the stale entries this left are not the tick's work


def per_call_ns(fn: Callable[[], None], calls: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        samples.append((time.process_time() - started) / calls * 1e9)
    return statistics.median(samples)


def old_sweep_walk(views: list[ServiceView], beats: BeatTable, now: float) -> int:
    """The per-round walk of the 5 s sweeper this replaces (find_expired over every owned
    ephemeral instance), without its submits: what each round cost before anything expired."""
    expired = 0
    for view in views:
        per_service = beats.service_beats(view.name)
        for inst in view.ephemeral:
            if inst.marked:
                continue
            last = per_service.get(inst.key)
            if last is None:
                continue
            idle_ms = (now - last) * 1000.0
            if idle_ms > inst.ip_delete_timeout_ms or (
                idle_ms > inst.heartbeat_timeout_ms and inst.healthy
            ):
                expired += 1
    return expired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n, rounds = args.instances, args.rounds
    one_percent = max(1, n // 100)

    setup_started = time.process_time()
    s = Setup(n, args.services)
    print(
        f"{n:,} instances in {args.services} services"
        f" (set-up {time.process_time() - setup_started:.1f} s)"
    )

    # A beat's part, cycling over every key (dict sizes as in a real node).
    cycle = itertools.cycle(s.keys)

    def touch() -> None:
        name, key = next(cycle)
        s.beats.touch(name, key)

    def changed() -> None:
        name, key = next(cycle)
        s.beats.changed(name, key)

    def nothing() -> None:
        next(cycle)

    calls = min(n, 100_000)
    loop_ns = per_call_ns(nothing, calls, rounds)  # the loop and the key, subtracted below
    touch_ns = per_call_ns(touch, calls, rounds) - loop_ns
    changed_ns = per_call_ns(changed, calls, rounds) - loop_ns
    s.beats.drain_changed()
    print(
        f"BeatTable.touch (a beat): {touch_ns:.0f} ns;"
        f" BeatTable.changed (a registration adds): {changed_ns:.0f} ns"
    )

    # First tick: arms everything. Memory of the expiry structure alone.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    first = s.tick()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    armed = s.health.armed_instances
    print(
        f"first tick (arms {armed:,}): {first * 1e3:.0f} ms (under tracemalloc); "
        f"expiry structure {(after - before) / max(armed, 1):.0f} B per instance"
    )

    # The same without tracemalloc: a member that starts, or takes over every service.
    firsts = []
    for _ in range(3):
        s.health._expiry = ExpiryQueue()
        s.health._owned.clear()
        s.health._swept = False
        firsts.append(s.tick())
    # An ownership change that moves nothing here: one question per service.
    scans = []
    for _ in range(rounds):
        s.health.ownership_changed()
        scans.append(s.tick())
    print(
        f"first tick, arming all: median {statistics.median(firsts) * 1e3:.0f} ms;"
        f" a tick after an ownership change (nothing moved): "
        f"{statistics.median(scans) * 1e3:.2f} ms"
    )

    # Nothing due: every deadline is 15 s out, ticks 0.25 s apart.
    idle = [s.tick() for _ in range(40)]
    print(
        f"tick, nothing due: median {statistics.median(idle) * 1e6:.1f} µs, "
        f"max {max(idle) * 1e6:.1f} µs ({len(idle)} ticks)"
    )

    # 1 % come due in one tick: a different slice each round, armed to come due now (reaching
    # into the queue: a bench), beaten just now (re-armed) or silent for 20 s (marked unhealthy).
    step = n // one_percent

    def slice_tick(r: int, silent: bool, real_submit: bool) -> tuple[float, int]:
        s.rearm_all()
        s.real_submit = real_submit
        chosen = s.keys[r % step :: step][:one_percent]
        for name, key in chosen:
            s.beats._beats[name][key] = s.clock[0] - (20.0 if silent else 0.0)
            s.health._expiry.arm(name, key, s.clock[0])
        checks = s.health.stats.expiry_checks
        took = s.tick()
        return took, s.health.stats.expiry_checks - checks

    r = iter(range(3 * rounds))
    for label, silent, real in (
        ("beaten since (re-armed)", False, False),
        ("silent, marked unhealthy, submit a no-op", True, False),
        ("silent, marked unhealthy, real SetHealth writes + registry rebuilds", True, True),
    ):
        runs = [slice_tick(next(r), silent, real) for _ in range(rounds)]
        print(
            f"tick, 1 % due ({runs[0][1]:,}), {label}: "
            f"median {statistics.median(t for t, _ in runs) * 1e3:.2f} ms"
        )
    print(f"  (the 1 % lies across all {args.services} services: one SetHealth each)")

    # Steady state: every instance beats every 5 s, phases spread; 45 s simulated, the last 30 s
    # measured (the first 15 s re-arm the deadlines set by rearm_all all at once).
    s.rearm_all()
    s.real_submit = True
    by_phase: list[list[tuple[ServiceName, InstanceKey]]] = [[] for _ in range(20)]
    for i, pair in enumerate(s.keys):
        by_phase[i % 20].append(pair)
    steady: list[float] = []
    checks = 0
    for t in range(180):
        for name, key in by_phase[t % 20]:  # the beats of this quarter second (not measured)
            s.beats.touch(name, key)
        if t == 60:
            checks = s.health.stats.expiry_checks
        took = s.tick()
        if t >= 60:
            steady.append(took)
    checks = s.health.stats.expiry_checks - checks
    print(
        "steady state, all beating every 5 s:"
        f" tick median {statistics.median(steady) * 1e3:.2f} ms,"
        f" mean {statistics.mean(steady) * 1e3:.2f} ms; {checks / 30:,.0f} deadlines re-armed/s;"
        f" expiry CPU {sum(steady) / 30 * 1e3:.1f} ms per second"
    )

    views = s.registry.views()
    walks = []
    for _ in range(rounds):
        started = time.process_time()
        old_sweep_walk(views, s.beats, s.clock[0])
        walks.append(time.process_time() - started)
    print(
        f"for comparison, the old sweeper's walk over all {n:,}: "
        f"median {statistics.median(walks) * 1e3:.0f} ms per round (every 5 s)"
    )


if __name__ == "__main__":
    main()
