"""Self-preservation on a fake clock: the arithmetic of renewals and expected renewals, and the
sweeper holding and releasing the verdicts on watched instances (naming.preservation)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import pytest
from django.test import Client

from consistency.datum import DatumKey
from distro.store import DistroStore
from naming.changes import Change, RemoveInstances, UpsertInstance
from naming.domain import Instance, ServiceName
from naming.health import HealthServices, HealthSettings
from naming.preservation import (
    PreservationSettings,
    Renewals,
    SelfPreservation,
    expected_in,
    renewal_cap,
)
from server.config import SettingError, from_environ
from testkit.health import in_memory_health

SVC = ServiceName("public", "DEFAULT_GROUP@@APP")
# Renew every second, unhealthy after 12 s, removed after 18 s: both well past a 5 s window
# (engaging takes at most one window after renewals stop, plus a second).
EUREKA = {
    "preserved.source": "eureka",
    "preserved.heart.beat.interval": "1000",
    "preserved.heart.beat.timeout": "12000",
    "preserved.ip.delete.timeout": "18000",
}
NACOS = {k: v for k, v in EUREKA.items() if k != "preserved.source"}
WINDOW_S = 5.0


def eureka(n: int, metadata: dict[str, str] = EUREKA) -> Instance:
    return Instance(f"10.0.0.{n}", 8080, metadata=metadata)


# -- the arithmetic ------------------------------------------------------------------------------


def test_an_instance_counts_only_in_windows_it_was_known_for_whole():
    assert expected_in(60.0, since=0.0, start=10.0) == 60.0
    assert expected_in(60.0, since=10.0, start=10.0) == 60.0
    assert expected_in(60.0, since=10.5, start=10.0) == 0.0


def test_at_most_one_renewal_over_the_expected_share_counts():
    assert renewal_cap(2.0) == 3  # Eureka's 30 s renewals in a minute
    assert renewal_cap(5.0) == 6


def test_renewals_are_counted_per_window_only_for_watched_sources():
    clock = [100.0]
    renewals = Renewals(PreservationSettings(window_s=10.0), clock=lambda: clock[0])
    nacos = Instance("10.0.0.1", 1)
    other = Instance("10.0.0.2", 1, metadata={"preserved.source": "airlift"})
    for _ in range(3):
        renewals.renewed(SVC, eureka(1))
        renewals.renewed(SVC, nacos)
        renewals.renewed(SVC, other)
    clock[0] = 112.0
    renewals.renewed(SVC, eureka(1))
    assert renewals.window_counts(0) == {(SVC, eureka(1).key): 3}
    assert renewals.window_counts(1) == {(SVC, eureka(1).key): 1}
    assert renewals.total == 4
    clock[0] = 131.0  # two windows on: the old counts are dropped
    renewals.renewed(SVC, eureka(1))
    assert renewals.window_counts(0) == {} and renewals.window_counts(1) == {}


def test_turned_off_nothing_is_counted_or_held():
    renewals = Renewals(PreservationSettings(enabled=False))
    renewals.renewed(SVC, eureka(1))
    assert renewals.total == 0 and not renewals.counts(eureka(1))


def _evaluate(
    watched: Iterable[Instance], beats: dict[int, int], threshold: float = 0.85
) -> SelfPreservation:
    """Instances watched from before the window [0, 60), each with ``beats[n]`` renewals."""
    clock = [0.0]
    renewals = Renewals(PreservationSettings(threshold=threshold), clock=lambda: clock[0])
    preservation = SelfPreservation(renewals)
    for inst in watched:
        preservation.watch(SVC, inst, -1.0)
        for _ in range(beats.get(int(inst.ip.rsplit(".", 1)[1]), 0)):
            renewals.renewed(SVC, inst)
    preservation.evaluate(61.0)
    return preservation


EUREKA_30S = {"preserved.source": "eureka", "preserved.heart.beat.interval": "30000"}


def test_eurekas_worked_example_one_dead_of_ten_expires_two_dead_hold():
    fleet = [eureka(n, EUREKA_30S) for n in range(10)]
    one_dead = _evaluate(fleet, {n: 2 for n in range(1, 10)})
    status = one_dead.status
    assert (status.expected, status.limit, status.renewals) == (20.0, 17, 18)
    assert not status.active
    two_dead = _evaluate(fleet, {n: 2 for n in range(2, 10)})
    assert two_dead.status.renewals == 16 and two_dead.status.active


def test_clients_renewing_faster_than_declared_cannot_stand_in_for_dead_ones():
    fleet = [eureka(n, EUREKA_30S) for n in range(10)]
    # Five dead; the five alive renew every 5 s (12 a minute) instead of every 30 s.
    status = _evaluate(fleet, {n: 12 for n in range(5, 10)}).status
    assert status.renewals == 5 * 3 and status.active


def test_no_watched_instances_or_no_full_window_yet_never_holds():
    assert not _evaluate([], {}).status.active
    renewals = Renewals(PreservationSettings())
    preservation = SelfPreservation(renewals)
    preservation.watch(SVC, eureka(1), renewals.origin)
    assert not preservation.evaluate(renewals.origin + 59.0)  # the first window is not over


def test_nacos_and_connection_bound_instances_are_not_watched():
    preservation = SelfPreservation(Renewals())
    preservation.watch(SVC, Instance("10.0.0.1", 1, metadata=NACOS), 0.0)
    preservation.watch(SVC, Instance("10.0.0.2", 1, metadata=EUREKA, lease="c1"), 0.0)
    assert preservation.evaluate(61.0) is False and preservation.status.instances == 0


# -- the sweeper on a fake clock -------------------------------------------------------------


@dataclass
class Harness:
    clock: list[float]
    health: HealthServices
    store: DistroStore
    notify: Callable[[], None]

    def submit(self, change: Change) -> None:
        self.store.submit(DatumKey.instances(SVC, True), change, 5.0)
        self.notify()

    def register(self, inst: Instance) -> None:
        """As ``NamingOperations.register_instance`` does: write, beat, tell the expiry."""
        self.submit(UpsertInstance(inst, SVC.grouped))
        self.health._beats.touch(SVC, inst.key)
        self.health._beats.changed(SVC, inst.key)

    def beat(self, inst: Instance) -> None:
        """As ``NamingOperations.beat`` does for an instance it found."""
        self.health._beats.touch(SVC, inst.key)
        self.health.renewals.renewed(SVC, inst)

    def listed(self) -> dict[str, bool]:
        datum = self.store.get(DatumKey.instances(SVC, True))
        return {} if datum is None else {i.ip: i.healthy for i in datum.value.values()}

    def run(self, until: float, beating: Iterable[Instance], every: float = 1.0) -> None:
        """Tick every 0.25 s up to ``until``; ``beating`` renew every ``every`` seconds."""
        beating = list(beating)
        step = 0.25
        while self.clock[0] + step <= until + 1e-9:
            self.clock[0] += step
            if abs(self.clock[0] / every - round(self.clock[0] / every)) < 1e-9:
                for inst in beating:
                    self.beat(inst)
            self.health.sweep_once()


def harness(enabled: bool = True) -> Harness:
    clock = [1000.0]
    preservation = PreservationSettings(enabled=enabled, window_s=WINDOW_S)
    health, store, notifier = in_memory_health(
        clock, None, HealthSettings(sweep_interval_s=0.25, preservation=preservation)
    )
    return Harness(clock, health, store, notifier.drain)


def fleet(h: Harness, n: int = 10, metadata: dict[str, str] = EUREKA) -> list[Instance]:
    instances = [eureka(i, metadata) for i in range(1, n + 1)]
    for inst in instances:
        h.register(inst)
    return instances


def test_eight_of_ten_stopping_at_once_stay_registered_and_healthy_while_it_holds(caplog):
    caplog.set_level(logging.WARNING, logger="naming.preservation")
    h = harness()
    instances = fleet(h)
    h.run(1020.0, instances)
    assert not h.health.preservation.active
    h.run(1060.0, instances[:2])  # 8 stop: unhealthy at 1032, removed at 1038 without it
    status = h.health.preservation
    assert status.active and status.engaged == 1
    assert (status.renewals, status.expected, status.limit) == (10, 50.0, 42)
    assert h.listed() == {i.ip: True for i in instances}
    assert status.held_instances == 8 and status.held_verdicts > 8
    assert h.health.stats.expired_unhealthy == 0 and h.health.stats.expired_removed == 0
    engaged = [r.getMessage() for r in caplog.records]
    assert len(engaged) == 1 and engaged[0].startswith("EMERGENCY: self-preservation engaged")
    # At 1025: the first window after the stop still had the eight beats of 1020.
    assert "18 renewals in the last 5 s of 50 expected (threshold 42)" in engaged[0]
    # They come back: the first full window of renewals lifts it; nothing was lost.
    h.run(1072.0, instances)
    assert not h.health.preservation.active and h.health.preservation.held_instances == 0
    assert h.listed() == {i.ip: True for i in instances}
    # The lift is logged too, a minute after the last line at the most.
    h.run(1090.0, instances)
    assert len(caplog.records) == 2 and "self-preservation lifted" in caplog.records[1].getMessage()


def test_one_of_ten_stopping_expires_as_usual():
    h = harness()
    instances = fleet(h)
    h.run(1020.0, instances)
    h.run(1040.0, instances[1:])  # last beat of 10.0.0.1 at 1020
    assert not h.health.preservation.active
    assert h.health.preservation.renewals == 45  # 9 of 10: above floor(50 x 0.85) = 42
    assert "10.0.0.1" not in h.listed() and len(h.listed()) == 9
    assert h.health.stats.expired_removed == 1


def test_nacos_instances_expire_while_it_holds():
    h = harness()
    instances = fleet(h)
    nacos = Instance("10.0.1.1", 8080, metadata=NACOS)
    h.register(nacos)
    h.run(1020.0, [*instances, nacos])
    h.run(1060.0, instances[:2])
    assert h.health.preservation.active
    assert "10.0.1.1" not in h.listed() and len(h.listed()) == 10


def test_when_the_silent_instances_are_deregistered_it_lifts_and_expected_follows():
    h = harness()
    instances = fleet(h)
    h.run(1020.0, instances)
    h.run(1040.0, instances[:2])
    assert h.health.preservation.active
    h.submit(RemoveInstances(tuple(i.key for i in instances[2:])))  # an operator's deregister
    h.run(1042.0, instances[:2])
    status = h.health.preservation
    assert not status.active and status.instances == 2 and status.expected == 10.0


def test_when_it_lifts_the_held_instances_expire_within_a_second():
    h = harness()
    instances = fleet(h)
    h.run(1020.0, instances)
    h.run(1040.0, instances[:2])
    assert len(h.listed()) == 10
    # Sixty more register and renew: 62 of 70 renewing is over 85 %; it lifts at 1050.
    fresh = [Instance(f"10.0.2.{n}", 8080, metadata=EUREKA) for n in range(1, 61)]
    for inst in fresh:
        h.register(inst)
    h.run(1049.0, [*instances[:2], *fresh])
    assert h.health.preservation.active  # their first window was not whole: not counted yet
    h.run(1050.5, [*instances[:2], *fresh])
    assert not h.health.preservation.active
    h.run(1052.0, [*instances[:2], *fresh])
    assert all(i.ip not in h.listed() for i in instances[2:])
    assert h.health.stats.expired_removed == 8


def test_fast_renewals_of_the_living_do_not_hide_the_dead():
    h = harness()
    instances = fleet(h)
    h.run(1020.0, instances)
    # Three stop; the seven others renew four times a second instead of once.
    h.run(1040.0, instances[3:], every=0.25)
    status = h.health.preservation
    assert status.renewals == 7 * 6 and status.active  # each capped at 5 + 1
    assert len(h.listed()) == 10


def test_turned_off_lapsed_instances_expire():
    h = harness(enabled=False)
    instances = fleet(h)
    h.run(1020.0, instances)
    h.run(1040.0, instances[:2])
    assert not h.health.preservation.active and len(h.listed()) == 2


def test_instances_count_from_their_first_whole_window():
    h = harness()
    h.run(1003.5, [])
    instances = fleet(h)  # in the middle of the first window, on a member that just started
    h.run(1030.0, instances[1:])  # 10.0.0.1 never renews: removed 18 s after registering
    assert h.health.preservation.engaged == 0
    assert "10.0.0.1" not in h.listed() and len(h.listed()) == 9


# -- the console -------------------------------------------------------------------------------


def test_the_services_page_shows_the_emergency_banner_only_while_it_holds(node):
    browser = Client()
    assert b"self-preservation" not in browser.get("/nacos/console/services").content.lower()
    renewals = node.operations.renewals
    assert renewals is node.health.renewals  # one counter: beats write it, the expiry reads it
    renewals.status = replace(
        renewals.status, active=True, renewals=4, expected=20.0, limit=17, held_instances=2
    )
    page = browser.get("/nacos/console/services").content.decode()
    assert 'id="self-preservation"' in page and "EMERGENCY!" in page
    assert "Only 4 of the 20 renewals expected in the last 60 s" in page
    assert "lapsed instances of eureka are kept registered" in page


# -- settings -----------------------------------------------------------------------------------


def test_settings_default_to_eurekas_and_are_checked():
    config = from_environ({})
    assert config.self_preservation and config.self_preservation_threshold == 0.85
    assert config.self_preservation_sources == ("eureka",)
    assert config.self_preservation_window_s == 60.0
    config = from_environ(
        {
            "NAMING_SELF_PRESERVATION_SOURCES": "eureka, airlift",
            "NAMING_SELF_PRESERVATION_THRESHOLD": "0.5",
        }
    )
    assert config.self_preservation_sources == ("eureka", "airlift")
    with pytest.raises(SettingError) as info:
        from_environ(
            {
                "NAMING_SELF_PRESERVATION_THRESHOLD": "1.5",
                "NAMING_SELF_PRESERVATION_WINDOW_S": "0.5",
                "NAMING_SELF_PRESERVATION_SOURCES": ",",
            }
        )
    problems = " ".join(info.value.problems)
    assert "NAMING_SELF_PRESERVATION_THRESHOLD" in problems
    assert "NAMING_SELF_PRESERVATION_WINDOW_S" in problems
    assert "NAMING_SELF_PRESERVATION_SOURCES must name a source" in problems
    assert not from_environ({"NAMING_SELF_PRESERVATION": "false"}).self_preservation
