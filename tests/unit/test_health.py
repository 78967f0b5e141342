"""Beat expiry on a fake clock: the pure verdict, the deadline queue, and the sweeper's ticks
over a real in-memory Distro store and registry (no threads: each test calls ``sweep_once``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from consistency.datum import DatumKey
from consistency.notifier import Notifier
from distro.store import DistroStore
from naming.changes import Change, RemoveInstances, SetHealth, UpdateMetadata, UpsertInstance
from naming.domain import Instance, InstanceKey, ServiceName, Switches
from naming.expiry import AFTER_S, Action, ExpiryQueue, first_due, judge
from naming.health import BeatTable, HealthServices, HealthSettings
from testkit.health import in_memory_health

SVC = ServiceName("public", "DEFAULT_GROUP@@svc")
SHORT = {
    "preserved.heart.beat.interval": "1000",
    "preserved.heart.beat.timeout": "2000",
    "preserved.ip.delete.timeout": "5000",
}


def key(ip: str) -> InstanceKey:
    return InstanceKey("DEFAULT", ip, 1)


# -- the verdict -------------------------------------------------------------------------------


def test_default_timeouts_mark_unhealthy_after_15s_and_remove_after_30s():
    inst = Instance("1.1.1.1", 1)
    assert judge(inst, last=100.0, now=110.0)[0] is Action.KEEP
    assert judge(inst, last=100.0, now=115.0)[0] is Action.KEEP  # strictly past the timeout
    assert judge(inst, last=100.0, now=115.5)[0] is Action.UNHEALTHY
    assert judge(inst, last=100.0, now=130.5)[0] is Action.REMOVE


def test_a_kept_instance_is_next_looked_at_right_after_its_next_timeout():
    inst = Instance("1.1.1.1", 1)
    assert first_due(inst, 100.0) == pytest.approx(115.0 + AFTER_S)
    assert judge(inst, last=108.0, now=115.0)[1] == pytest.approx(123.0 + AFTER_S)
    # Unhealthy already: the next look is at the removal deadline.
    sick = Instance("1.1.1.1", 1, healthy=False)
    verdict = judge(sick, last=100.0, now=116.0)
    assert verdict[0] is Action.KEEP and verdict[1] == pytest.approx(130.0 + AFTER_S)


def test_already_unhealthy_and_marked_instances_are_not_reported_again():
    assert judge(Instance("1.1.1.1", 1, healthy=False), 80.0, 100.0)[0] is Action.KEEP
    marked = judge(Instance("1.1.1.2", 1, marked=True), 0.0, 100.0)
    assert marked[0] is Action.KEEP and marked[1] == 115.0


def test_preserved_metadata_shortens_the_timeouts():
    inst = Instance("1.1.1.1", 1, metadata=SHORT)
    assert first_due(inst, 100.0) == pytest.approx(102.0 + AFTER_S)
    assert judge(inst, 100.0, 102.01)[0] is Action.UNHEALTHY
    assert judge(inst, 100.0, 105.01)[0] is Action.REMOVE


def test_a_delete_timeout_below_the_heartbeat_timeout_removes_without_marking():
    inst = Instance("1.1.1.1", 1, metadata={"preserved.ip.delete.timeout": "3000"})
    assert first_due(inst, 100.0) == pytest.approx(103.0 + AFTER_S)
    assert judge(inst, 100.0, 103.01)[0] is Action.REMOVE


# -- the deadline queue -------------------------------------------------------------------------


def test_the_queue_yields_what_is_due_earliest_first_and_nothing_else():
    queue = ExpiryQueue()
    queue.arm(SVC, key("3"), 30.0)
    queue.arm(SVC, key("1"), 10.0)
    queue.arm(SVC, key("2"), 20.0)
    assert queue.pop_due(5.0) == {}
    due = queue.pop_due(25.0)
    assert [(r.name, keys) for r, keys in due.items()] == [(SVC, [key("1"), key("2")])]
    assert len(queue) == 3  # still armed: the caller re-arms or disarms them
    assert queue.pop_due(25.0) == {}


def test_re_arming_replaces_the_deadline_and_disarming_drops_it():
    queue = ExpiryQueue()
    queue.arm(SVC, key("1"), 10.0)
    queue.arm(SVC, key("1"), 40.0)  # it beat: the old entry is stale
    queue.arm(SVC, key("2"), 10.0)
    queue.disarm_key(SVC, key("2"))
    assert queue.pop_due(30.0) == {} and len(queue) == 1
    assert list(queue.pop_due(40.0).values()) == [[key("1")]]


def test_stale_entries_are_compacted_away():
    queue = ExpiryQueue()
    for n in range(3000):
        queue.arm(SVC, key("1"), float(n))  # one instance re-armed 3000 times
    assert len(queue) == 1 and queue.heap_size <= 2 * 1 + 1024 + 1
    assert list(queue.pop_due(1e9).values()) == [[key("1")]]


# -- the sweeper on a fake clock ----------------------------------------------------------------


@dataclass
class Harness:
    clock: list[float]
    health: HealthServices
    store: DistroStore
    notifier: Notifier
    owned: list[bool] = field(default_factory=lambda: [True])

    @property
    def beats(self) -> BeatTable:
        return self.health._beats

    def submit(self, change: Change, service: ServiceName = SVC) -> None:
        self.store.submit(DatumKey.instances(service, True), change, 5.0)
        self.notifier.drain()

    def register(self, inst: Instance, service: ServiceName = SVC) -> None:
        """As ``NamingOperations.register_instance`` does: write, beat, tell the expiry."""
        self.submit(UpsertInstance(inst, service.grouped), service)
        self.beats.touch(service, inst.key)
        self.beats.changed(service, inst.key)

    def listed(self, service: ServiceName = SVC) -> dict[str, bool]:
        datum = self.store.get(DatumKey.instances(service, True))
        return {} if datum is None else {i.ip: i.healthy for i in datum.value.values()}

    def tick_until(self, until: float, step: float = 0.25) -> list[tuple[float, dict[str, bool]]]:
        seen = []
        while self.clock[0] + step <= until + 1e-9:
            self.clock[0] += step
            self.health.sweep_once()
            seen.append((self.clock[0], self.listed()))
        return seen


def harness(events: bool = False, start: float = 1000.0) -> Harness:
    clock, owned = [start], [True]
    health, store, notifier = in_memory_health(
        clock, owned, HealthSettings(sweep_interval_s=0.25), ownership_events=events
    )
    return Harness(clock, health, store, notifier, owned)


def test_overrides_turn_an_instance_unhealthy_then_remove_it_within_a_tick_of_each_deadline():
    h = harness()
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))  # its one beat, at t = 1000
    seen = h.tick_until(1007.0)
    unhealthy_at = min(t for t, listed in seen if listed.get("10.0.0.1") is False)
    removed_at = min(t for t, listed in seen if "10.0.0.1" not in listed)
    assert 1002.0 < unhealthy_at <= 1002.25 + AFTER_S
    assert 1005.0 < removed_at <= 1005.25 + AFTER_S
    assert h.health.stats.expired_unhealthy == 1 and h.health.stats.expired_removed == 1
    assert h.health.armed_instances == 0 and h.beats.last(SVC, key("10.0.0.1")) is None


def test_an_instance_that_beats_is_re_armed_not_expired_and_ticks_in_between_judge_nothing():
    h = harness()
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.register(Instance("10.0.0.2", 1, metadata=SHORT))
    for _ in range(10):  # 10.0.0.1 beats every second; 10.0.0.2 never again
        h.tick_until(h.clock[0] + 1.0)
        h.beats.touch(SVC, key("10.0.0.1"))
    assert h.listed() == {"10.0.0.1": True}
    # 40 ticks; each deadline looked at once per timeout (about every 2 s), not every tick.
    assert h.health.stats.sweeps == 40
    assert h.health.stats.expiry_checks <= 6 + 3


def test_a_beat_after_the_mark_keeps_it_until_the_delete_deadline_of_that_beat():
    h = harness()
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.tick_until(1003.0)
    assert h.listed() == {"10.0.0.1": False}
    h.beats.touch(SVC, key("10.0.0.1"))  # NamingOperations.beat would also revive it
    h.submit(SetHealth(((key("10.0.0.1"), True),)))
    h.tick_until(1004.75)
    assert h.listed() == {"10.0.0.1": True}
    seen = h.tick_until(1010.0)
    assert min(t for t, listed in seen if not listed) <= 1008.25 + AFTER_S


def test_a_shorter_timeout_set_later_counts_from_the_next_tick():
    h = harness()
    h.register(Instance("10.0.0.1", 1))  # default timeouts: due at 1015
    h.tick_until(1001.0)
    h.submit(UpdateMetadata((key("10.0.0.1"),), SHORT, False))
    h.beats.changed(SVC, key("10.0.0.1"))  # as NamingOperations.metadata_batch does
    seen = h.tick_until(1004.0)
    assert min(t for t, listed in seen if listed.get("10.0.0.1") is False) <= 1002.25 + AFTER_S


def test_instances_that_arrive_by_sync_get_a_full_timeout_from_when_they_are_seen():
    h = harness()
    h.tick_until(1001.0)
    # Written by a peer (Distro sync): no beat and no change notice here.
    h.submit(UpsertInstance(Instance("10.0.0.9", 1, metadata=SHORT), SVC.grouped))
    seen = h.tick_until(1005.0)
    unhealthy_at = min(t for t, listed in seen if listed.get("10.0.0.9") is False)
    assert 1003.25 < unhealthy_at <= 1003.5 + AFTER_S
    assert h.health.armed_instances == 1


def test_a_deregistered_instance_is_disarmed_and_its_beat_forgotten():
    h = harness()
    h.register(Instance("10.0.0.1", 1))
    h.register(Instance("10.0.0.2", 1))
    h.tick_until(1001.0)
    assert h.health.armed_instances == 2
    h.submit(RemoveInstances((key("10.0.0.1"),)))
    h.tick_until(1001.5)
    assert h.health.armed_instances == 1 and h.beats.last(SVC, key("10.0.0.1")) is None


def test_a_member_that_does_not_own_the_service_never_expires_it():
    h = harness()
    h.owned[0] = False
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.tick_until(1010.0)
    assert h.listed() == {"10.0.0.1": True} and h.health.armed_instances == 0


def test_with_ownership_events_a_regained_service_restarts_its_grace_only_when_told():
    h = harness(events=True)
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.tick_until(1000.5)
    h.owned[0] = False  # moves away ...
    h.health.ownership_changed()
    h.tick_until(1001.0)
    assert h.health.armed_instances == 0
    h.tick_until(1010.0)  # ... the client beats through the new owner meanwhile
    h.owned[0] = True
    h.health.ownership_changed()
    seen = h.tick_until(1015.0)
    assert h.health.stats.regained_services == 1
    # The beat held from t = 1000 does not count: a full 2 s from the regain at 1010.25.
    unhealthy_at = min(t for t, listed in seen if listed.get("10.0.0.1") is False)
    assert 1012.25 < unhealthy_at <= 1012.5 + AFTER_S


def test_with_ownership_events_ticks_do_not_ask_about_every_service():
    h = harness(events=True)
    asked: list[ServiceName] = []

    def responsible(service: ServiceName) -> bool:
        asked.append(service)
        return True

    h.health._is_responsible = responsible
    for n in range(50):
        h.register(Instance(f"10.0.1.{n}", 1), ServiceName("public", f"DEFAULT_GROUP@@s{n}"))
    h.tick_until(1000.25)
    assert len(asked) == 50  # the first tick arms every owned service
    asked.clear()
    h.tick_until(1005.0)
    assert asked == []  # nothing changed, nothing due
    h.health.ownership_changed()
    h.tick_until(1005.25)
    assert len(asked) == 50


def test_health_check_switched_off_expires_nothing_until_it_is_back_on():
    h = harness()
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.health._registry.switches = Switches(healthCheckEnabled=False)
    h.tick_until(1010.0)
    assert h.listed() == {"10.0.0.1": True}
    h.health._registry.switches = Switches(healthCheckEnabled=True)
    h.tick_until(1010.25)
    assert h.listed() == {}  # judged on its real last beat: past the delete timeout


def test_a_paused_process_grants_every_instance_a_fresh_timeout():
    h = harness()
    h.register(Instance("10.0.0.1", 1, metadata=SHORT))
    h.tick_until(1000.5)
    h.clock[0] += 3.0  # paused for 3 s (more than the 2 s floor) at t = 1000.5
    h.health.sweep_once()
    assert h.health.stats.pauses == 1 and h.listed() == {"10.0.0.1": True}
    seen = h.tick_until(1008.0)
    unhealthy_at = min(t for t, listed in seen if listed.get("10.0.0.1") is False)
    assert unhealthy_at > 1003.5 + 2.0
