"""Issue #8, Distro under faults: an owner killed inside the sync window, and a member paused.

- sync-ack mode (``NAMING_DISTRO_SYNC_ACK``): kill -9 of an owner while registrations stream in
  loses none that was answered ``ok``;
- default mode: an instance lost that way (acknowledged, never replicated) comes back with its
  client's next beat;
- a member stopped with SIGSTOP for 20 s and resumed never lists an instance that kept beating
  (through the other members) as unhealthy; the sweeper's pause detection, unit-tested with a
  fake clock.

The cluster tests are slow (``@pytest.mark.slow``); every loop is bounded in count and time and
every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import signal
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from consistency.datum import Datum, DatumKey
from consistency.notifier import Notifier
from distro.mapper import DistroMapper
from distro.membership import Membership, MemberState
from distro.protocol import SYNC_PATH
from distro.store import DistroStore
from distro.sync import SyncAck
from distro.transport import InMemoryTransport, PeerResponse
from lib.errors import Unavailable
from naming.changes import UpsertInstance
from naming.codec import DATUM_CODEC
from naming.domain import Instance, ServiceName
from naming.health import PAUSE_SWEEPS, HealthServices, HealthSettings
from testkit.harness import NodeProcess, assert_converged, running_cluster, wait_for
from testkit.health import in_memory_health
from tests.cluster.distro_support import (
    GROUP,
    hosts,
    metrics,
    owner_address,
    ports,
    service_owned_by,
)

LONG_LIVED = '{"preserved.heart.beat.timeout":"600000","preserved.ip.delete.timeout":"600000"}'


def healthy_members(node: NodeProcess) -> list[str]:
    return list(metrics(node)["distro"]["healthyMembers"])


def all_see_each_other(nodes: list[NodeProcess]) -> bool:
    everyone = sorted(n.address for n in nodes)
    return all(healthy_members(n) == everyone for n in nodes)


def restart_with(node: NodeProcess, nodes: list[NodeProcess], **env: str) -> None:
    """Restart one member with extra settings; wait until every member maps keys to it again."""
    node.stop()
    node.env.update(env)
    node.start()
    wait_for(functools.partial(all_see_each_other, nodes), 30, 0.2, "all members UP everywhere")


def healthy_ports_are(node: NodeProcess, service: str, expected: list[tuple[int, bool]]) -> bool:
    return sorted((h["port"], h["healthy"]) for h in hosts(node, service)) == expected


def sdk_beat_params(service: str, ip: str, port: int) -> dict[str, str]:
    """A beat as the Nacos SDKs send it: the instance rides along in ``beat`` (JSON), which lets
    the owner re-register an instance it does not know."""
    beat = {"serviceName": GROUP + service, "ip": ip, "port": port, "cluster": "DEFAULT"}
    beat.update({"weight": 1.0, "metadata": {}, "scheduled": False})
    return {"serviceName": service, "beat": json.dumps(beat)}


# -- sync-ack: kill -9 of the owner mid-stream --------------------------------------------------


class Registrar:
    """Registers fresh instances of ``services`` one after another through ``node`` until told
    to stop (or ``max_s``); records each one answered ``ok`` and when."""

    def __init__(self, node: NodeProcess, services: list[str], tag: int, max_s: float) -> None:
        self.node = node
        self.services = services
        self.tag = tag
        self.max_s = max_s
        self.acked: list[tuple[str, str, int, float]] = []  # service, ip, port, monotonic ack
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Registrar:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        token = self.node.token()
        conn = http.client.HTTPConnection(self.node.host, self.node.port, timeout=5)
        end = time.monotonic() + self.max_s
        n = 0
        while not self._stop.is_set() and time.monotonic() < end:
            n += 1
            service = self.services[n % len(self.services)]
            ip, port = f"10.{self.tag}.{n // 250 % 250}.{n % 250}", 3000 + n
            query = urllib.parse.urlencode(
                {
                    "serviceName": service,
                    "ip": ip,
                    "port": port,
                    "metadata": LONG_LIVED,
                    "accessToken": token,
                }
            )
            try:
                conn.request("POST", f"/nacos/v1/ns/instance?{query}")
                response = conn.getresponse()
                body = response.read()
            except OSError:
                # The member died under us (or is gone): that write was never acknowledged.
                conn.close()
                self.refused += 1
                time.sleep(0.05)
                continue
            if response.status == 200 and body == b"ok":
                self.acked.append((service, ip, port, time.monotonic()))
            else:
                self.refused += 1
                time.sleep(0.05)
        conn.close()


def listed(node: NodeProcess, service: str) -> set[tuple[str, int]]:
    return {(h["ip"], h["port"]) for h in hosts(node, service)}


@pytest.mark.slow
def test_sync_ack_kill9_of_the_owner_mid_stream_loses_no_acknowledged_registration(
    tmp_path: Path,
):
    env = {"NAMING_DISTRO_SYNC_ACK": "true", "NAMING_DISTRO_VERIFY_INTERVAL_S": "1"}
    with running_cluster(tmp_path, 3, env=env) as nodes:
        owner, *survivors = nodes
        # Widen the owner's background sync window to 1.5 s and stop its verify rounds: without
        # sync-ack, every write it acknowledged in its last 1.5 s would be lost with it.
        restart_with(
            owner,
            nodes,
            NAMING_DISTRO_BATCH_WINDOW_MS="1500",
            NAMING_DISTRO_VERIFY_INTERVAL_S="3600",
        )
        services = sorted({service_owned_by(nodes, owner, f"ack{i}-x") for i in range(4)})
        for node in nodes:
            node.token()  # logged in before the writers start (the threads share it)
        # Two writers at the owner itself, one through each survivor (forwarded to the owner).
        writers = [
            Registrar(owner, services, 1, 12),
            Registrar(owner, services, 2, 12),
            Registrar(survivors[0], services, 3, 12),
            Registrar(survivors[1], services, 4, 12),
        ]
        try:
            for writer in writers:
                writer.start()
            time.sleep(3)
            killed_at = time.monotonic()
            owner.kill9()
            time.sleep(4)  # writes keep coming through the survivors, to the new owner
        finally:
            for writer in writers:
                writer.stop()
        acked = [a for w in writers for a in w.acked]
        in_window = [a for a in acked if killed_at - 1.5 <= a[3] <= killed_at]
        assert len(acked) > 50, [(w.node.address, len(w.acked), w.refused) for w in writers]
        # The kill really landed inside the window the old code loses.
        assert len(in_window) >= 5, len(in_window)
        assert any(a[3] > killed_at for a in acked), "no write acknowledged after the kill"

        assert_converged(survivors, 30)

        def missing(node: NodeProcess) -> list[tuple[str, str, int, float]]:
            lost = []
            for service in services:
                present = listed(node, service)
                lost += [a for a in acked if a[0] == service and (a[1], a[2]) not in present]
            return lost

        for node in survivors:
            # The stores agree; a member lists a synced datum once its notifier has applied it.
            with contextlib.suppress(AssertionError):
                wait_for(functools.partial(lambda n: not missing(n), node), 10, 0.1, "all listed")
            lost = missing(node)
            assert not lost, (node.address, len(lost), len(acked), lost[:5])
        acks = [metrics(n)["distro"]["syncAck"] for n in survivors]
        assert all(a is not None and a["failed"] == 0 for a in acks), acks


# -- default mode: a lost instance returns with its next beat ------------------------------------


@pytest.mark.slow
def test_an_instance_lost_with_its_owner_comes_back_with_its_clients_next_beat(tmp_path: Path):
    with running_cluster(tmp_path, 3) as nodes:
        owner, *survivors = nodes
        # The owner replicates nothing (no sync, no verify): whatever it acknowledges now exists
        # only on it, as a write acknowledged inside the sync window does.
        restart_with(
            owner, nodes, NAMING_FAULT_DROP_SYNC="true", NAMING_DISTRO_VERIFY_INTERVAL_S="3600"
        )
        service = service_owned_by(nodes, owner, "lost")
        params = {"serviceName": service, "ip": "10.0.5.1", "port": 5}
        register = owner.api("POST", "/instance", params)
        assert (register.status, register.text) == (200, "ok")
        assert ports(owner, service) == {5}
        time.sleep(1)
        assert all(ports(n, service) == set() for n in survivors)

        owner.kill9()
        wait_for(
            lambda: all(owner.address not in healthy_members(n) for n in survivors),
            30,
            0.2,
            "the survivors to drop the dead owner",
        )
        new_owner = owner_address(survivors, service)
        assert new_owner in {n.address for n in survivors}
        # Lost: acknowledged, yet on no survivor (the window this issue documents).
        for node in survivors:
            assert hosts(node, service) == []

        # The client's next beat (through a member that does not own the service, as the SDK
        # may) carries the instance, and the new owner registers it again.
        via = next(n for n in survivors if n.address != new_owner)
        client = via.client()
        answer = client.send_heartbeat(service, "10.0.5.1", 5)
        assert answer["code"] == 10200, answer
        for node in survivors:
            wait_for(
                functools.partial(healthy_ports_are, node, service, [(5, True)]),
                10,
                0.1,
                f"the instance back on {node.address}",
            )
        assert_converged(survivors, 20)


# -- SIGSTOP / SIGCONT of a member ----------------------------------------------------------------


def make_health(
    clock: list[float], owned: list[bool] | None = None
) -> tuple[HealthServices, DistroStore, Notifier]:
    return in_memory_health(clock, owned, HealthSettings(sweep_interval_s=5.0))


def test_a_sweeper_resumed_after_a_pause_restarts_the_beat_grace_before_it_sweeps():
    clock = [1000.0]
    health, store, notifier = make_health(clock)
    service = ServiceName("public", GROUP + "paused")
    key = DatumKey.instances(service, True)
    inst = Instance("10.0.0.1", 1)
    store.submit(key, UpsertInstance(inst, service.grouped), 5.0)
    notifier.drain()
    beats = health._beats

    def healthy() -> bool:
        datum = store.get(key)
        assert datum is not None
        return bool(next(iter(datum.value.values())).healthy)

    beats.touch(service, inst.key)
    for _ in range(2):  # normal sweeps, 5 s apart: no pause
        clock[0] += 5.0
        health.sweep_once()
    assert healthy()

    # Paused 20 s (> PAUSE_SWEEPS intervals) while the client beat through other members: the
    # last beat we hold is 30 s old, but it must not count.
    clock[0] += 20.0
    assert PAUSE_SWEEPS * health.settings.sweep_interval_s < 20.0
    health.sweep_once()
    assert healthy() and health.stats.expired_unhealthy == 0
    assert health.stats.pauses == 1

    # The grace is one fresh heartbeat timeout, not immunity: no beat for 16 s more expires it.
    for _ in range(3):
        clock[0] += 5.0
        health.sweep_once()
        assert healthy()
    clock[0] += 1.5
    health.sweep_once()
    assert not healthy()
    assert health.stats.pauses == 1 and health.stats.expired_unhealthy == 1


def test_a_regained_service_ignores_beats_recorded_while_another_member_owned_it():
    clock, owned = [1000.0], [True]
    health, store, notifier = make_health(clock, owned)
    service = ServiceName("public", GROUP + "regained")
    key = DatumKey.instances(service, True)
    inst = Instance("10.0.0.2", 1)
    store.submit(key, UpsertInstance(inst, service.grouped), 5.0)
    notifier.drain()
    health.sweep_once()  # owned
    owned[0] = False  # ownership moves to another member ...
    clock[0] += 1.0
    health.sweep_once()
    # ... which forwards one beat here while the two disagree on the map: it is recorded.
    health._beats.touch(service, inst.key)
    for _ in range(4):  # the client beats through the new owner for 20 s
        clock[0] += 5.0
        health.sweep_once()
    owned[0] = True  # ownership comes back: the beat we hold is 20 s old
    clock[0] += 1.0
    health.sweep_once()
    datum = store.get(key)
    assert datum is not None and next(iter(datum.value.values())).healthy
    assert health.stats.expired_unhealthy == 0 and health.stats.regained_services == 1
    assert health.stats.pauses == 0


def test_a_service_created_between_sweeps_is_not_regained_and_expires_on_its_own_timeout():
    """A new service's beats are fresh: restarting its grace would add up to one sweep
    interval to its instances' timeout (caught by test_f8 with a 3 s preserved timeout)."""
    clock = [1000.0]
    health, store, notifier = make_health(clock)
    health.sweep_once()  # a sweep before the service exists
    service = ServiceName("public", GROUP + "new")
    key = DatumKey.instances(service, True)
    inst = Instance("10.0.0.3", 1)
    clock[0] += 4.0
    store.submit(key, UpsertInstance(inst, service.grouped), 5.0)
    notifier.drain()
    health._beats.touch(service, inst.key)  # the registration's beat, at t = 1004
    clock[0] += 1.0
    health.sweep_once()  # t = 1005: the service is new here, not regained
    assert health.stats.regained_services == 0
    clock[0] += 14.5  # t = 1019.5: 15.5 s after its only beat (timeout 15 s)
    health.sweep_once()
    datum = store.get(key)
    assert datum is not None and not next(iter(datum.value.values())).healthy
    assert health.stats.expired_unhealthy == 1


def test_sweeps_a_little_late_are_not_taken_for_a_pause():
    clock = [0.0]
    health, _, _ = make_health(clock)
    for _ in range(5):
        clock[0] += PAUSE_SWEEPS * health.settings.sweep_interval_s  # late, but not paused
        health.sweep_once()
    assert health.stats.pauses == 0


class SdkBeaters:
    """Beats ``instances`` (service, ip, port, interval) through ``via`` in turn, each on its
    own interval, SDK-style; one thread (owned here) stops within 0.1 s of ``stop()``."""

    def __init__(
        self, via: list[NodeProcess], instances: list[tuple[str, str, int, float]]
    ) -> None:
        self.via = via
        self.instances = instances
        self.answers: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True)
            for i in range(len(instances))
        ]

    def start(self) -> SdkBeaters:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, index: int) -> None:
        service, ip, port, interval = self.instances[index]
        turn = index
        while not self._stop.is_set():
            node = self.via[turn % len(self.via)]
            turn += 1
            started = time.monotonic()
            try:
                result = node.api("PUT", "/instance/beat", sdk_beat_params(service, ip, port))
                self.answers.append(result.status)
            except OSError:
                self.answers.append(-1)
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def unhealthy_listed(
    node: NodeProcess, services: list[str], expected: dict[str, set[tuple[str, int]]]
) -> list[tuple[str, str, int]]:
    """Beating instances ``node`` lists as unhealthy (or not at all)."""
    bad = []
    for service in services:
        seen = {(h["ip"], h["port"]): h["healthy"] for h in hosts(node, service, timeout=5)}
        for ip, port in expected[service]:
            if seen.get((ip, port)) is not True:
                bad.append((service, ip, port))
    return bad


def all_healthy(
    node: NodeProcess, services: list[str], expected: dict[str, set[tuple[str, int]]]
) -> bool:
    return not unhealthy_listed(node, services, expected)


@pytest.mark.slow
def test_a_member_paused_20s_never_lists_an_instance_that_kept_beating_as_unhealthy(
    tmp_path: Path,
):
    with running_cluster(tmp_path, 3, env={"NAMING_SWEEP_INTERVAL_S": "1"}) as nodes:
        paused, *others = nodes
        # Ten services, so every member owns some; three instances each.
        services = [f"pause-{i}" for i in range(10)]
        owners = {owner_address(nodes, s) for s in services}
        assert len(owners) == 3, owners
        instances = [
            (s, f"10.1.{i}.{j}", 4000 + j, 1.0 + (i * 3 + j) % 5 * 1.0)  # every 1-5 s
            for i, s in enumerate(services)
            for j in range(3)
        ]
        expected: dict[str, set[tuple[str, int]]] = {s: set() for s in services}
        for service, ip, port, _ in instances:
            params = {"serviceName": service, "ip": ip, "port": port}
            answer = others[0].api("POST", "/instance", params)
            assert answer.text == "ok", answer.text
            expected[service].add((ip, port))
        for node in nodes:
            wait_for(functools.partial(all_healthy, node, services, expected), 15, 0.2)

        beaters = SdkBeaters(others, instances).start()
        try:
            time.sleep(6)  # the paused member has seen beats for its services
            assert paused.proc is not None
            paused.proc.send_signal(signal.SIGSTOP)
            try:
                end = time.monotonic() + 20
                while time.monotonic() < end:  # the others never doubt a beating instance
                    for node in others:
                        assert not unhealthy_listed(node, services, expected), node.address
                    time.sleep(0.5)
            finally:
                paused.proc.send_signal(signal.SIGCONT)
            end = time.monotonic() + 12
            rounds = 0
            while time.monotonic() < end:
                for node in nodes:
                    bad = unhealthy_listed(node, services, expected)
                    assert not bad, (
                        node.address,
                        "paused" if node is paused else "",
                        bad,
                        {n.address: hosts(n, bad[0][0]) for n in nodes},
                        {n.address: metrics(n)["health"] for n in nodes},
                    )
                rounds += 1
                time.sleep(0.2)
            assert rounds >= 10
        finally:
            beaters.stop()
        assert metrics(paused)["health"]["pausesDetected"] >= 1
        ok = beaters.answers.count(200)
        assert ok > 0.7 * len(beaters.answers), (ok, len(beaters.answers))


# -- sync-ack unit tests (in-memory transport; one layer) -----------------------------------------


class AckPeers:
    """Three members on an in-memory transport; ``a`` runs SyncAck, b and c record batches."""

    def __init__(self) -> None:
        self.network = InMemoryTransport()
        self.local, self.peers = "10.0.0.1:8848", ("10.0.0.2:8848", "10.0.0.3:8848")
        self.received: dict[str, list[bytes]] = {p: [] for p in self.peers}
        self.status = 200
        self.gate = threading.Event()
        self.gate.set()
        for peer in self.peers:
            self.network.handlers[peer] = functools.partial(self._handle, peer)
        transport = self.network.bind(self.local)
        self.membership = Membership(
            self.local, (self.local, *self.peers), transport, lambda: MemberState.UP
        )
        for peer in self.peers:
            self.membership.on_report(peer, {"state": "UP"})
        self.ack = SyncAck(self.local, self.membership, transport, timeout_s=2.0, codec=DATUM_CODEC)
        self.store = DistroStore(Notifier(), DATUM_CODEC)

    def _handle(
        self, peer: str, _sender: str, method: str, path: str, body: bytes, _headers: object
    ) -> PeerResponse:
        assert (method, path) == ("PUT", SYNC_PATH)
        self.gate.wait(5)
        self.received[peer].append(body)
        return PeerResponse(self.status, b"ok")

    def datum(self, service: str, port: int = 1) -> Datum:
        name = ServiceName("public", GROUP + service)
        key = DatumKey.instances(name, True)
        return self.store.submit(
            key, UpsertInstance(Instance("10.9.9.9", port), name.grouped), 5
        ).datum


def test_sync_ack_waits_for_the_services_successor_not_just_any_peer():
    cluster = AckPeers()
    for i in range(6):
        datum = cluster.datum(f"svc-{i}")
        successor = DistroMapper.of(cluster.local, cluster.peers).owner(datum.key.service)
        before = {p: len(b) for p, b in cluster.received.items()}
        cluster.ack.hold(datum)
        assert {p: len(b) - before[p] for p, b in cluster.received.items()} == {
            p: int(p == successor) for p in cluster.peers
        }
    assert cluster.ack.status()["acked"] == 6


def test_sync_ack_asks_the_next_successor_when_one_refuses_and_acks_alone_when_none_is_left():
    cluster = AckPeers()
    datum = cluster.datum("refused")
    first = cluster.ack.successor(datum.key.service)
    assert first is not None
    cluster.network.down.add(first)
    cluster.ack.hold(datum)
    other = next(p for p in cluster.peers if p != first)
    assert len(cluster.received[other]) == 1
    assert cluster.membership.state_of(first) is MemberState.DOWN
    cluster.network.down.add(other)
    cluster.ack.hold(cluster.datum("refused", 2))  # nobody left to hold it: acknowledged
    assert cluster.ack.status()["alone"] == 1 and cluster.ack.status()["failed"] == 0


def test_sync_ack_fails_with_503_when_the_successor_does_not_store_the_change():
    cluster = AckPeers()
    cluster.status = 500
    with pytest.raises(Unavailable) as caught:
        cluster.ack.hold(cluster.datum("broken"))
    assert caught.value.status == 503 and "retry" in caught.value.message
    assert cluster.ack.status()["failed"] == 1


def test_concurrent_sync_acks_to_one_successor_share_a_request():
    cluster = AckPeers()
    datums: list[Datum] = []
    i = 0
    while len(datums) < 6:  # six services with the same successor
        datum = cluster.datum(f"shared-{i}")
        i += 1
        if cluster.ack.successor(datum.key.service) == cluster.peers[0]:
            datums.append(datum)
    cluster.gate.clear()  # the first request stays in flight until the others queue
    threads = [threading.Thread(target=cluster.ack.hold, args=(d,)) for d in datums]
    threads[0].start()
    wait_for(lambda: cluster.network.calls == 1, 5, 0.01)
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: sum(len(q) for q in cluster.ack._queues.values()) == 5, 5, 0.01)
    cluster.gate.set()
    for thread in threads:
        thread.join(10)
    assert cluster.network.calls == 2  # one for the first writer, one for the five others
    assert [body.count(b'"revision"') for body in cluster.received[cluster.peers[0]]] == [1, 5]
    assert cluster.ack.status()["acked"] == 6
