"""Distro's peer protocol on an in-memory transport: three members in one process, no sockets."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import pytest

from consistency.datum import Datum, DatumKey
from consistency.notifier import Notifier
from distro.dispatch import DispatchFailed
from distro.membership import MemberState
from distro.protocol import (
    CHANGE_PATH,
    CHECKSUM_PATH,
    SNAPSHOT_PATH,
    SYNC_PATH,
    TOUCH_PATH,
    decode_batch,
    encode_batch,
    split_batches,
)
from distro.service import DistroCluster
from distro.sync import SyncSettings
from distro.transport import InMemoryTransport, PeerResponse
from lib.errors import NamingError
from naming.changes import Change, ClearValue, UpdateInstance, UpsertInstance
from naming.codec import DATUM_CODEC
from naming.domain import Instance, ServiceName
from testkit.harness import wait_for

MEMBERS = ("10.0.0.1:8848", "10.0.0.2:8848", "10.0.0.3:8848")


def serve(cluster: DistroCluster):
    """What distro/views.py does, minus HTTP and signatures."""

    def handler(
        sender: str, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> PeerResponse:
        route = urlsplit(path).path
        if route == SYNC_PATH and method == "PUT":
            cluster.protocol.on_sync(body)
            return PeerResponse(200, b"ok")
        if route == SYNC_PATH and method == "GET":
            return PeerResponse(200, cluster.protocol.query(body))
        if route == SNAPSHOT_PATH:
            snapshot = cluster.protocol.snapshot()
            return (
                PeerResponse(503, b"starting") if snapshot is None else PeerResponse(200, snapshot)
            )
        if route == CHANGE_PATH:
            return PeerResponse(200, cluster.protocol.on_change(body))
        if route == TOUCH_PATH and cluster.on_touch is not None:
            return PeerResponse(200, cluster.on_touch(body))
        if route == CHECKSUM_PATH:
            source = parse_qs(urlsplit(path).query)["source"][0]
            assert source == sender
            cluster.protocol.on_checksums(sender, body)
            return PeerResponse(200, b"ok")
        report = json.dumps({"data": cluster.membership.self_report()}).encode()
        cluster.membership.on_report(sender, json.loads(body))
        return PeerResponse(200, report)

    return handler


class Member:
    def __init__(self, network: InMemoryTransport, address: str, settings: SyncSettings) -> None:
        self.notifier = Notifier()
        self.notifier.start()
        self.state = MemberState.STARTING
        self.cluster = DistroCluster(
            address,
            MEMBERS,
            self.notifier,
            network.bind(address),
            lambda: self.state,
            settings=settings,
            codec=DATUM_CODEC,
            decode_change=Change.decode,
            report_interval_s=3600,
        )
        network.handlers[address] = serve(self.cluster)

    def up(self) -> None:
        self.state = MemberState.UP
        self.cluster.store.ready = True
        self.cluster.membership.refresh()

    def register(self, service: str, port: int) -> Datum:
        name = ServiceName("public", f"DEFAULT_GROUP@@{service}")
        change = UpsertInstance(Instance("10.1.1.1", port), name.grouped)
        return self.cluster.submit(DatumKey.instances(name, True), change, 1.0).datum

    def ports(self, service: str) -> set[int]:
        name = ServiceName("public", f"DEFAULT_GROUP@@{service}")
        datum = self.cluster.get(DatumKey.instances(name, True))
        return set() if datum is None else {i.port for i in datum.value.values()}

    def stop(self) -> None:
        self.cluster.stop()
        self.notifier.stop()


def start_members(settings: SyncSettings) -> tuple[InMemoryTransport, list[Member]]:
    network = InMemoryTransport()
    members = [Member(network, a, settings) for a in MEMBERS]
    for m in members:
        m.up()
        m.cluster.start()
    for m in members:
        m.cluster.membership.report_once()
    return network, members


@pytest.fixture
def trio() -> Iterator[tuple[InMemoryTransport, list[Member]]]:
    network, members = start_members(SyncSettings(verify_interval_s=3600))
    yield network, members
    for m in members:
        m.stop()


@pytest.fixture
def lossy_trio() -> Iterator[tuple[InMemoryTransport, list[Member]]]:
    network, members = start_members(SyncSettings(verify_interval_s=3600, drop_syncs=True))
    yield network, members
    for m in members:
        m.stop()


def has_ports(member: Member, service: str, expected: set[int]) -> bool:
    return member.ports(service) == expected


def holds(member: Member, count: int) -> bool:
    return len(list(member.cluster.items())) == count


def owner_of(members: list[Member], service: str) -> Member:
    owner = members[0].cluster.owner(f"DEFAULT_GROUP@@{service}")
    return next(m for m in members if m.cluster.local == owner)


def test_members_that_reported_up_share_ownership(trio):
    _, members = trio
    for m in members:
        assert m.cluster.membership.mapper.healthy == MEMBERS


def test_a_change_on_the_owner_reaches_every_peer(trio):
    _, members = trio
    owner = owner_of(members, "orders")
    owner.register("orders", 80)
    for m in members:
        wait_for(functools.partial(has_ports, m, "orders", {80}), 5, interval_s=0.01)


def test_a_removal_replicates_as_a_tombstone(trio):
    _, members = trio
    owner = owner_of(members, "gone")
    datum = owner.register("gone", 80)
    for m in members:
        wait_for(functools.partial(has_ports, m, "gone", {80}), 5, interval_s=0.01)
    owner.cluster.submit(datum.key, ClearValue(), 1.0)
    for m in members:
        wait_for(functools.partial(has_ports, m, "gone", set()), 5, interval_s=0.01)


def test_a_receiver_keeps_only_newer_revisions(trio):
    _, members = trio
    receiver = members[1]
    key = DatumKey.instances(ServiceName("public", "DEFAULT_GROUP@@rev"), True)
    newer = Datum(key, {}, 5)
    older = Datum(key, None, 4)
    assert receiver.cluster.protocol.on_sync(encode_batch([newer], DATUM_CODEC)) == 1
    assert receiver.cluster.protocol.on_sync(encode_batch([older], DATUM_CODEC)) == 0
    assert receiver.cluster.store.raw(key) == newer


def test_sync_batches_to_an_unreachable_peer_are_retried_until_it_returns(trio):
    network, members = trio
    owner = owner_of(members, "retry")
    peer = next(m for m in members if m is not owner)
    network.down.add(peer.cluster.local)
    owner.register("retry", 81)
    wait_for(lambda: owner.cluster.scheduler.status()[peer.cluster.local]["failures"] > 0, 5, 0.01)
    assert peer.ports("retry") == set()
    network.down.discard(peer.cluster.local)
    wait_for(lambda: peer.ports("retry") == {81}, 10, interval_s=0.02)


def test_verify_repairs_a_lost_sync_in_one_round(lossy_trio):
    _, members = lossy_trio
    owner = owner_of(members, "lost")
    owner.register("lost", 90)
    others = [m for m in members if m is not owner]
    assert all(m.ports("lost") == set() for m in others)
    owner.cluster.verify.verify_once()
    assert all(m.ports("lost") == {90} for m in others)
    assert all(m.cluster.protocol.repaired == 1 for m in others)


def test_verify_drops_a_key_the_owner_no_longer_has_after_two_rounds(lossy_trio):
    _, members = lossy_trio
    owner = owner_of(members, "stray")
    peer = next(m for m in members if m is not owner)
    key = DatumKey.instances(ServiceName("public", "DEFAULT_GROUP@@stray"), True)
    peer.cluster.store.apply_remote(
        Datum(key, {Instance("10.1.1.1", 1).key: Instance("10.1.1.1", 1)}, 4)
    )
    owner.cluster.verify.verify_once()
    assert peer.ports("stray") == {1}, "one round is not enough: the key may be in flight"
    owner.cluster.verify.verify_once()
    assert peer.ports("stray") == set()


def test_verify_from_a_member_we_think_does_not_own_the_keys_is_ignored(trio):
    _, members = trio
    receiver = members[0]
    name = next(
        f"svc-{n}" for n in range(100) if receiver.cluster.responsible(f"DEFAULT_GROUP@@svc-{n}")
    )
    key = DatumKey.instances(ServiceName("public", f"DEFAULT_GROUP@@{name}"), True)
    body = json.dumps({key.encode(): "whatever"}).encode()
    receiver.cluster.protocol.on_checksums(members[1].cluster.local, body)
    assert receiver.cluster.protocol.aborted_rounds == 1
    assert receiver.cluster.get(key) is None


def test_a_pull_from_the_owner_replaces_a_conflicting_copy_of_the_same_revision(lossy_trio):
    _, members = lossy_trio
    owner = owner_of(members, "split")
    peer = next(m for m in members if m is not owner)
    theirs = owner.register("split", 70)
    conflicting = Instance("10.9.9.9", 71)
    peer.cluster.store.apply_remote(
        Datum(theirs.key, {conflicting.key: conflicting}, theirs.revision)
    )
    owner.cluster.verify.verify_once()
    assert peer.ports("split") == {70}


def test_a_starting_member_loads_the_snapshot_of_a_member_that_is_up(trio):
    network, members = trio
    for n in range(20):
        owner_of(members, f"snap-{n}").register(f"snap-{n}", 1000 + n)
    for m in members:
        wait_for(functools.partial(holds, m, 20), 5, interval_s=0.01)
    # A fourth process for the first address: fresh memory, as after kill -9 and restart.
    members[0].stop()
    fresh = Member(network, MEMBERS[0], SyncSettings(verify_interval_s=3600))
    result = fresh.cluster.load_snapshot(threading.Event())
    assert result is not None and result.source in MEMBERS[1:] and result.datums == 20
    assert all(fresh.ports(f"snap-{n}") == {1000 + n} for n in range(20))
    fresh.stop()


def test_a_starting_member_never_loads_from_another_starting_member(trio):
    network, members = trio
    members[1].cluster.store.ready = False  # still loading: answers 503
    members[2].cluster.store.ready = False
    stopping = threading.Event()
    timer = threading.Timer(1.5, stopping.set)
    timer.start()
    fresh = Member(network, "10.0.0.1:8848", SyncSettings(verify_interval_s=3600))
    network.down.add(MEMBERS[2])  # unreachable: it may hold the data, so keep waiting for it
    assert fresh.cluster.load_snapshot(stopping) is None
    timer.cancel()
    fresh.stop()


def test_when_every_peer_is_starting_the_member_starts_empty(trio):
    network, members = trio
    for m in members[1:]:
        m.cluster.store.ready = False
    fresh = Member(network, MEMBERS[0], SyncSettings(verify_interval_s=3600))
    result = fresh.cluster.load_snapshot(threading.Event())
    assert result is not None and result.source is None and result.datums == 0
    fresh.stop()


def test_a_change_submitted_on_a_non_owner_is_applied_by_the_owner(trio):
    _, members = trio
    owner = owner_of(members, "remote")
    other = next(m for m in members if m is not owner)
    other.register("remote", 60)
    assert other.ports("remote") == {60}, "the member that asked reads its own write"
    assert owner.ports("remote") == {60}
    assert (
        owner.cluster.store.raw(
            DatumKey.instances(ServiceName("public", "DEFAULT_GROUP@@remote"), True)
        ).revision
        == 1
    )
    for m in members:
        wait_for(functools.partial(has_ports, m, "remote", {60}), 5, interval_s=0.01)


def test_a_change_refused_by_the_owner_raises_its_error_on_the_member_that_asked(trio):
    _, members = trio
    owner = owner_of(members, "strict")
    other = next(m for m in members if m is not owner)
    name = ServiceName("public", "DEFAULT_GROUP@@strict")
    with pytest.raises(NamingError) as caught:
        other.cluster.submit(
            DatumKey.instances(name, True), UpdateInstance(Instance("10.1.1.1", 1)), 1.0
        )
    assert caught.value.status == 400 and "not exist" in caught.value.message
    assert owner.ports("strict") == set() and other.ports("strict") == set()


def test_large_syncs_are_split_into_bounded_batches_that_decode_to_the_same_datums():
    datums = []
    for n in range(30):
        name = ServiceName("public", f"DEFAULT_GROUP@@big-{n}")
        insts = {Instance("10.2.2.2", p).key: Instance("10.2.2.2", p) for p in range(1, 40)}
        datums.append(Datum(DatumKey.instances(name, True), insts, n + 1))
    batches = list(split_batches(datums, DATUM_CODEC, max_bytes=20_000))
    assert len(batches) > 3
    assert all(len(body) <= 20_000 + 100 for _, body in batches)
    assert [d for _, body in batches for d in decode_batch(body, DATUM_CODEC)] == datums


class RefusingDispatcher:
    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, peer: str, body: bytes) -> None:
        self.calls += 1
        raise DispatchFailed("400 bad batch", permanent=True)

    def check(self) -> None:
        return None

    def status(self) -> dict[str, object]:
        return {}


def test_a_batch_the_peer_refuses_is_not_resent_forever(trio):
    _, members = trio
    owner = owner_of(members, "refused")
    refusing = RefusingDispatcher()
    owner.cluster.scheduler._dispatcher = refusing
    owner.register("refused", 5)
    peer = next(m for m in members if m is not owner).cluster.local
    wait_for(lambda: owner.cluster.scheduler.status()[peer]["failures"] >= 1, 5, 0.01)
    time.sleep(0.5)
    assert refusing.calls == 2, "one refused batch per peer, never resent"
    assert all(s["pending"] == 0 for s in owner.cluster.scheduler.status().values())


def test_a_change_for_a_dead_owner_is_applied_by_the_next_owner(trio):
    network, members = trio
    owner = owner_of(members, "orphan")
    network.down.add(owner.cluster.local)  # killed; nobody has noticed yet
    other = next(m for m in members if m is not owner)
    other.register("orphan", 44)
    assert other.cluster.membership.state_of(owner.cluster.local) is MemberState.DOWN
    survivors = [m for m in members if m is not owner]
    for m in survivors:
        wait_for(functools.partial(has_ports, m, "orphan", {44}), 5, interval_s=0.01)


def test_a_renewal_for_a_dead_owner_goes_to_the_next_owner_as_a_change_does(trio):
    network, members = trio
    heard: dict[str, list[bytes]] = {m.cluster.local: [] for m in members}

    def hearing(at: str, body: bytes) -> bytes:
        heard[at].append(body)
        return b"seen by " + at.encode()

    for m in members:
        m.cluster.on_touch = functools.partial(hearing, m.cluster.local)
    owner = owner_of(members, "renewed")
    network.down.add(owner.cluster.local)  # killed; nobody has noticed yet
    other = next(m for m in members if m is not owner)
    answer = other.cluster.forward_touch("DEFAULT_GROUP@@renewed", b"beat", 1.0)
    new_owner = other.cluster.owner("DEFAULT_GROUP@@renewed")
    assert new_owner != owner.cluster.local
    assert answer == b"seen by " + new_owner.encode()
    assert heard[new_owner] == [b"beat"] and heard[owner.cluster.local] == []
    assert other.cluster.membership.state_of(owner.cluster.local) is MemberState.DOWN
    assert other.cluster.forward_failures == 0
