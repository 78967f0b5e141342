"""Connection-bound (leased) instances: the lease value, its codec field, the ``RemoveLeased``
change, beats and the expiry leaving them alone, and the lease reaper on a fake clock and fake
membership (no threads: each test calls ``tick``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client

from consistency.datum import DatumKey, KeyKind
from lib.errors import InvalidParam, Unavailable
from naming import audit
from naming import commands as s
from naming.changes import Change, RemoveLeased, UpdateInstance, UpsertInstance
from naming.codec import decode_instance, decode_value, encode_instance, encode_value, instance_set
from naming.domain import Instance, ServiceName
from naming.health import HealthServices, HealthSettings
from naming.leases import (
    Entries,
    HolderState,
    LeaseReaper,
    lease_connection,
    lease_holder,
    make_lease,
)
from node.runtime import NodeRuntime
from testkit.health import in_memory_health
from tests.unit.test_health import SHORT, SVC, key

SELF = "10.0.0.1:8848"
PEER = "10.0.0.2:8848"


def leased(ip: str, holder: str = SELF, connection: str = "c1", **kw: object) -> Instance:
    return Instance(ip, 1, lease=make_lease(holder, connection), **kw)


# -- the lease value and its codec --------------------------------------------------------------


def test_a_lease_names_its_holder_and_connection():
    lease = make_lease(SELF, "1700000000000_10.1.1.1_53122")
    assert lease == f"{SELF}|1700000000000_10.1.1.1_53122"
    assert lease_holder(lease) == SELF
    assert lease_connection(lease) == "1700000000000_10.1.1.1_53122"
    assert lease_connection(make_lease(SELF, "a|b")) == "a|b"  # only the holder is restricted
    assert lease_holder("") == "" and lease_connection("") == ""


@pytest.mark.parametrize(("holder", "connection"), [("", "c"), (SELF, ""), ("a|b", "c")])
def test_a_lease_needs_a_plain_holder_and_a_connection(holder: str, connection: str):
    with pytest.raises(InvalidParam):
        make_lease(holder, connection)


def test_the_codec_writes_a_lease_only_when_set_and_reads_old_data_as_beat_based():
    plain = encode_instance(Instance("10.0.0.1", 1))
    assert "lease" not in plain
    assert decode_instance(plain).lease == ""
    with_lease = encode_instance(leased("10.0.0.1"))
    assert with_lease["lease"] == f"{SELF}|c1"
    assert decode_instance(with_lease) == leased("10.0.0.1")
    # What Distro syncs and snapshots carry (and checksums: a lease that differs is repaired).
    value = instance_set([leased("10.0.0.1"), Instance("10.0.0.2", 1)])
    assert (
        decode_value(KeyKind.EPHEMERAL_INSTANCES, encode_value(KeyKind.EPHEMERAL_INSTANCES, value))
        == value
    )


# -- the change -------------------------------------------------------------------------------


def test_remove_leased_removes_only_instances_still_holding_that_lease():
    value = UpsertInstance(leased("10.0.0.1"), SVC.grouped).apply(None)
    value = UpsertInstance(leased("10.0.0.2", connection="c2"), SVC.grouped).apply(value)
    value = UpsertInstance(Instance("10.0.0.3", 1), SVC.grouped).apply(value)
    lease = make_lease(SELF, "c1")
    change = RemoveLeased(
        ((key("10.0.0.1"), lease), (key("10.0.0.2"), lease), (key("10.0.0.3"), ""))
    )
    after = change.apply(value)
    assert after is not None
    assert sorted(k.ip for k in after) == ["10.0.0.2", "10.0.0.3"]
    assert change.apply(value) == after  # deterministic: the same input gives the same output
    assert RemoveLeased(((key("10.0.0.9"), lease),)).apply(None) == {}


def test_remove_leased_crosses_the_wire_like_every_change():
    change = RemoveLeased(((key("10.0.0.1"), make_lease(SELF, "c|1")),))
    decoded = Change.decode(change.encode())
    assert decoded == change and isinstance(decoded, RemoveLeased)


def test_a_re_register_moves_the_lease_and_a_v1_register_clears_it():
    value = UpsertInstance(leased("10.0.0.1"), SVC.grouped, 111).apply(None)
    moved = UpsertInstance(leased("10.0.0.1", PEER, "c9"), SVC.grouped, 222).apply(value)
    assert moved is not None
    inst = moved[key("10.0.0.1")]
    assert inst.lease == make_lease(PEER, "c9") and inst.registered_ms == 111
    # The late release of the old connection keeps it.
    assert RemoveLeased(((key("10.0.0.1"), make_lease(SELF, "c1")),)).apply(moved) == moved
    cleared = UpsertInstance(Instance("10.0.0.1", 1), SVC.grouped).apply(moved)
    assert cleared is not None and cleared[key("10.0.0.1")].lease == ""


def test_an_update_keeps_the_lease():
    value = UpsertInstance(leased("10.0.0.1"), SVC.grouped).apply(None)
    updated = UpdateInstance(Instance("10.0.0.1", 1, weight=3.0)).apply(value)
    assert updated is not None
    assert updated[key("10.0.0.1")].lease == make_lease(SELF, "c1")
    assert updated[key("10.0.0.1")].weight == 3.0


# -- beat expiry ------------------------------------------------------------------------------


@dataclass
class Sweeper:
    clock: list[float]
    submit: Callable[[Change], None]
    tick: Callable[[], None]
    listed: Callable[[], dict[str, bool]]


def sweeper() -> tuple[Sweeper, HealthServices]:
    clock = [1000.0]
    health, store, notifier = in_memory_health(clock, None, HealthSettings(sweep_interval_s=0.25))

    def submit(change: Change) -> None:
        store.submit(DatumKey.instances(SVC, True), change, 5.0)
        notifier.drain()

    def listed() -> dict[str, bool]:
        datum = store.get(DatumKey.instances(SVC, True))
        return {} if datum is None else {i.ip: i.healthy for i in datum.value.values()}

    def tick() -> None:
        for _ in range(4):
            clock[0] += 0.25
            health.sweep_once()

    return Sweeper(clock, submit, tick, listed), health


def test_the_sweeper_never_arms_or_expires_a_leased_instance():
    sw, health = sweeper()
    sw.submit(UpsertInstance(leased("10.0.0.1", metadata=SHORT), SVC.grouped))
    sw.submit(UpsertInstance(Instance("10.0.0.2", 1, metadata=SHORT), SVC.grouped))
    for _ in range(10):
        sw.tick()
    assert sw.listed() == {"10.0.0.1": True}
    assert health.armed_instances == 0 and health.leased_instances == 1


def test_an_armed_instance_re_registered_over_a_connection_is_dropped_when_due():
    sw, health = sweeper()
    sw.submit(UpsertInstance(Instance("10.0.0.1", 1, metadata=SHORT), SVC.grouped))
    sw.tick()
    assert health.armed_instances == 1
    sw.submit(UpsertInstance(leased("10.0.0.1", metadata=SHORT), SVC.grouped))
    for _ in range(10):
        sw.tick()
    assert sw.listed() == {"10.0.0.1": True}
    assert health.armed_instances == 0 and health.leased_instances == 1


def test_a_leased_instance_that_left_is_no_longer_counted():
    sw, health = sweeper()
    sw.submit(UpsertInstance(leased("10.0.0.1"), SVC.grouped))
    sw.tick()
    sw.submit(RemoveLeased(((key("10.0.0.1"), make_lease(SELF, "c1")),)))
    sw.tick()
    assert health.leased_instances == 0


# -- operations over an in-memory node --------------------------------------------------------


def register(node: NodeRuntime, inst: Instance) -> None:
    node.operations.register_instance(s.RegisterInstance(SVC, inst))


def test_a_leased_register_stays_out_of_the_beat_table_and_a_beat_changes_nothing(
    node: NodeRuntime,
):
    register(node, leased("10.0.0.1", metadata=SHORT))
    assert node.beats.last(SVC, key("10.0.0.1")) is None
    node.operations.update_instance(s.RegisterInstance(SVC, Instance("10.0.0.1", 1, weight=2.0)))
    assert node.beats.last(SVC, key("10.0.0.1")) is None
    revision = node.registry.get(SVC).revision
    result = node.operations.beat(s.Beat(SVC, key("10.0.0.1"), None))
    assert result.found
    assert node.beats.last(SVC, key("10.0.0.1")) is None
    assert node.registry.get(SVC).revision == revision


def test_a_persistent_instance_cannot_be_leased(node: NodeRuntime):
    with pytest.raises(InvalidParam):
        register(node, leased("10.0.0.1", ephemeral=False))
    assert node.registry.get(SVC) is None


def test_release_leased_submits_only_what_matches_and_is_audited(node: NodeRuntime):
    register(node, leased("10.0.0.1"))
    register(node, leased("10.0.0.2", connection="c2"))
    revision = node.registry.get(SVC).revision
    wrong = make_lease(SELF, "c-other")
    assert node.operations.release_leased(SVC, [(key("10.0.0.1"), wrong)]) == 0
    assert node.registry.get(SVC).revision == revision
    assert node.operations.release_leased(ServiceName("public", "DEFAULT_GROUP@@none"), []) == 0
    released = node.leases.release_connection(
        {SVC: [(key("10.0.0.1"), make_lease(SELF, "c1")), (key("10.0.0.2"), wrong)]}
    )
    assert released == 1
    view = node.registry.get(SVC)
    assert view is not None and [i.ip for i in view.ephemeral] == ["10.0.0.2"]
    entries = node.audit.query(audit.AuditFilter(object="10.0.0.1:1")).entries
    assert entries[0].action == "deregister" and entries[0].reason == audit.CONNECTION_CLOSED


def test_the_v1_renders_never_show_a_lease(node: NodeRuntime, client: Client):
    register(node, leased("10.0.0.1"))
    for path in (
        "/nacos/v1/ns/instance/list?serviceName=svc",
        "/nacos/v1/ns/instance?serviceName=svc&ip=10.0.0.1&port=1",
        "/nacos/v1/ns/catalog/instances?serviceName=svc&clusterName=DEFAULT&pageNo=1&pageSize=10",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.content)
        assert b"lease" not in answer.content and b"c1" not in answer.content


# -- the reaper ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """What the reaper asks: member states, ownership, live connections, the clock."""

    clock: list[float] = field(default_factory=lambda: [5000.0])
    down: set[str] = field(default_factory=set)
    owner: list[bool] = field(default_factory=lambda: [True])
    live: set[str] = field(default_factory=set)
    fail: list[bool] = field(default_factory=lambda: [False])

    def state(self, address: str) -> HolderState:
        return "down" if address in self.down else "up"

    def connections(self) -> Collection[str]:
        return self.live


def reaper(node: NodeRuntime, world: Cluster, grace_s: float = 10.0) -> LeaseReaper:
    release = node.operations.release_leased

    def flaky(service: ServiceName, entries: Entries) -> int:
        if world.fail[0]:
            raise Unavailable("owner unreachable")
        return release(service, entries)

    return LeaseReaper(
        node.registry,
        flaky,
        SELF,
        world.state,
        lambda _service: world.owner[0],
        members=lambda: (SELF, PEER),
        connections=world.connections,
        grace_s=grace_s,
        interval_s=1.0,
        clock=lambda: world.clock[0],
    )


def run(r: LeaseReaper, world: Cluster, seconds: float) -> None:
    for _ in range(int(seconds)):
        world.clock[0] += 1.0
        r.tick()


def ips(node: NodeRuntime) -> list[str]:
    view = node.registry.get(SVC)
    return [] if view is None else sorted(i.ip for i in view.ephemeral)


def test_after_a_restart_own_instances_of_dead_connections_go_after_the_grace(node: NodeRuntime):
    world = Cluster(live={"c-live"})
    register(node, leased("10.0.0.1", connection="c-old"))  # from before the restart
    register(node, leased("10.0.0.2", connection="c-live"))
    register(node, Instance("10.0.0.3", 1))  # beat-based: not the reaper's
    r = reaper(node, world)
    run(r, world, 9)
    assert ips(node) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert r.tracked == 1 and r.stats.orphans_seen == 1
    run(r, world, 2)
    assert ips(node) == ["10.0.0.2", "10.0.0.3"]
    assert r.stats.removed == 1 and r.tracked == 0
    entries = node.audit.query(audit.AuditFilter(object="10.0.0.1:1")).entries
    assert entries[0].reason == audit.LEASE_EXPIRY and entries[0].action == "deregister"


def test_a_client_that_re_registers_within_the_grace_survives(node: NodeRuntime):
    world = Cluster()
    register(node, leased("10.0.0.1", connection="c-old"))
    r = reaper(node, world)
    run(r, world, 8)
    world.live.add("c-new")
    register(node, leased("10.0.0.1", connection="c-new"))  # the SDK's redo
    run(r, world, 30)
    assert ips(node) == ["10.0.0.1"] and r.stats.removed == 0 and r.tracked == 0


def test_a_down_holders_instances_go_on_the_owner_only_and_after_the_grace(node: NodeRuntime):
    world = Cluster()
    register(node, leased("10.0.0.1", holder=PEER))
    r = reaper(node, world)
    run(r, world, 30)
    assert ips(node) == ["10.0.0.1"]  # its holder is up: nothing to do
    world.down.add(PEER)
    world.owner[0] = False  # another member owns the service: not ours to remove
    run(r, world, 30)
    assert ips(node) == ["10.0.0.1"] and r.tracked == 0
    world.owner[0] = True
    run(r, world, 5)
    world.down.discard(PEER)  # it came back before the grace: the clock starts over
    run(r, world, 5)
    world.down.add(PEER)
    run(r, world, 9)
    assert ips(node) == ["10.0.0.1"]
    run(r, world, 2)
    assert ips(node) == [] and r.stats.removed == 1


def test_a_stranger_holder_counts_as_down(node: NodeRuntime):
    assert node.holder_state("10.9.9.9:8848") == "down"
    assert node.holder_state(node.address) == "up"


def test_ticks_are_cheap_once_started_with_everyone_up(node: NodeRuntime):
    world = Cluster()
    register(node, leased("10.0.0.1", holder=PEER))
    r = reaper(node, world)
    run(r, world, 12)  # the start window: grace + 2 intervals
    scans = r.stats.scans
    run(r, world, 20)
    assert r.stats.scans == scans and r.stats.ticks == 32
    r.release_failed()  # the edge could not release a closed connection: scan again
    run(r, world, 3)
    assert r.stats.scans == scans + 3


def test_a_failed_removal_is_retried_and_counted(node: NodeRuntime):
    world = Cluster()
    register(node, leased("10.0.0.1"))
    r = reaper(node, world)
    world.fail[0] = True
    run(r, world, 12)
    assert ips(node) == ["10.0.0.1"] and r.stats.failures >= 1 and r.tracked == 1
    world.fail[0] = False
    run(r, world, 1)
    assert ips(node) == [] and r.stats.removed == 1


def test_the_reaper_is_in_the_metrics(node: NodeRuntime, client: Client):
    metrics = client.get("/nacos/v1/ns/operator/metrics").json()
    assert metrics["leases"]["graceSeconds"] == 180.0
    assert {"scans", "orphansSeen", "removed", "failures"} <= set(metrics["leases"])
    assert node.leases.loop.alive


def test_between_full_scans_only_the_timed_orphans_are_looked_at(node: NodeRuntime):
    world = Cluster(live={"c-live"})
    register(node, leased("10.0.0.1", connection="c-old"))
    register(node, leased("10.0.0.2", connection="c-live"))
    r = reaper(node, world)
    walks = [0]
    views = node.registry.views

    def counted() -> list[Any]:
        walks[0] += 1
        return views()

    node.registry.views = counted  # type: ignore[method-assign]
    run(r, world, 9)
    assert walks[0] == 1 and r.tracked == 1  # one walk at the first tick, rechecks after it
    world.live.discard("c-live")  # a second orphan: found by the next full scan, 10 s later
    run(r, world, 2)
    assert ips(node) == ["10.0.0.2"] and walks[0] == 2 and r.tracked == 1
    run(r, world, 9)
    assert ips(node) == ["10.0.0.2"]  # seen orphaned at the full scan: its grace runs from there
    run(r, world, 1)
    assert ips(node) == []
