"""Issue #12 in a 3-member cluster, with the real Nacos 2.x Python SDKs (testkit/nacos_sdk.py).

Connection-bound instances replicate through Distro; the member holding the connection answers
for them (naming/leases.py). What is checked here, with nacos-sdk-python 2.0.9 and 3.2.0:

- instances registered through member A are listed by B and C (v1 HTTP) and by an SDK on B;
- a clean close on A removes them from every member at once;
- a subscriber on B is pushed a change made through C (SDK or v1 HTTP);
- ``kill -9`` of a member holding connections (slow): the SDKs given all three addresses fail
  over and redo their registers, their services never list empty on the survivors, and what
  the dead member held for clients that did not come back is removed only after the grace;
- SIGTERM of a member holding connections (a rolling restart, slow): its clients' instances stay
  listed on the others while the clients move (the stopping member releases nothing).

Where a client is connected is read from each member's connection list
(``/nacos/v1/core/loader/current``); when every client of a dead member has moved, from the
``grpc.connections`` counts of the survivors.

The members run with a lease grace (``GRACE_S``) much shorter than the default 180 s, yet long
enough for both SDKs to fail over *and redo*: 2.0.9 notices a dead server by its 5 s keepalive
and redoes at once on reconnecting; 3.2.0 reconnects at once (its stream breaks) but redoes its
registers and subscribes only on a 30 s timer (``AbstractRedoService._execute_redo_task`` waits
30 s on a queue nothing ever feeds), so its instances come back up to 30 s after the failover.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, assert_converged, running_cluster, wait_for
from testkit.nacos_sdk import SDK_VERSIONS, SdkClient
from tests.cluster.distro_support import metrics, service_owned_by

pytestmark = pytest.mark.xdist_group("grpc-cluster")

GRACE_S = 36.0  # > 3.2.0's 30 s redo timer + a report round to see the member DOWN
# The issue asks for 1 s (a clean close seen on every member, a push through another member);
# the times are printed, and held only to a loaded-box bound that a lost or stuck release or
# push would miss (as tests/e2e/test_grpc_sdk.py; speed is `dev.py bench-grpc`'s).
WITHIN_S = 5.0
POLL_S = 0.1
MAX_MOVERS = 12

MakeClient = Callable[..., SdkClient]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    env = {"NAMING_LEASE_GRACE_S": str(GRACE_S)}
    with running_cluster(Path(tmp_path_factory.mktemp("grpc-cluster")), env=env) as nodes:
        yield nodes


@pytest.fixture
def cluster(members: list[NodeProcess]) -> list[NodeProcess]:
    """The module's cluster with every member running (a test that killed one restarts it)."""
    for node in members:
        if node.proc is None or node.proc.poll() is not None:
            node.start()
    return members


@pytest.fixture(params=SDK_VERSIONS)
def sdk_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sdk(cluster: list[NodeProcess], tmp_path: Path) -> Iterator[MakeClient]:
    """``sdk(version, [members])`` starts a client logged in as the admin; all closed after."""
    clients: list[SdkClient] = []

    def make(version: str, targets: list[NodeProcess]) -> SdkClient:
        client = SdkClient(version, log_dir=tmp_path / f"sdk-{len(clients)}-{version}")
        clients.append(client)
        client.start(
            [n.address for n in targets],
            username="nacos",
            password=cluster[0].admin_password,
        )
        return client

    yield make
    for client in clients:
        client.close()


def listed(node: NodeProcess, service: str) -> set[tuple[str, int]]:
    result = node.api("GET", "/instance/list", {"serviceName": service}, timeout=5)
    assert result.status == 200, result.text
    return {(h["ip"], h["port"]) for h in result.json()["hosts"]}


def is_listed(node: NodeProcess, service: str, expected: set[tuple[str, int]]) -> bool:
    return listed(node, service) == expected


def wait_listed(
    nodes: list[NodeProcess], service: str, expected: set[tuple[str, int]], deadline_s: float = 10
) -> None:
    for node in nodes:
        wait_for(
            functools.partial(is_listed, node, service, expected),
            deadline_s,
            interval_s=0.05,
            message=f"{node.address} to list {sorted(expected)} for {service}",
        )


def grpc_connections(node: NodeProcess) -> int:
    return int(metrics(node)["grpc"]["connections"])


def connection_counts(nodes: list[NodeProcess]) -> list[int]:
    return [grpc_connections(n) for n in nodes]


# -- replication -----------------------------------------------------------------------------


def test_registered_through_a_is_listed_by_b_and_c_and_an_sdk_on_b(
    cluster: list[NodeProcess], sdk: MakeClient, sdk_version: str, svc: str
) -> None:
    a, b, c = cluster
    svc = service_owned_by(cluster, c, svc)  # A forwards the write to C, which syncs B
    writer = sdk(sdk_version, [a])
    assert writer.call("register", service=svc, ip="10.2.0.1", port=80, metadata={"k": "v"})
    wait_listed([a, b, c], svc, {("10.2.0.1", 80)})

    reader = sdk(sdk_version, [b])
    [host] = reader.call("list", service=svc, subscribe=False)
    assert (host["ip"], host["port"], host["metadata"]) == ("10.2.0.1", 80, {"k": "v"})
    assert host["ephemeral"] is True


def test_a_clean_close_on_a_removes_the_instances_from_every_member(
    cluster: list[NodeProcess], sdk: MakeClient, sdk_version: str, svc: str
) -> None:
    a, b, _ = cluster
    # A releases one service itself, the other through its owner B.
    services = [service_owned_by(cluster, a, f"{svc}-a"), service_owned_by(cluster, b, f"{svc}-b")]
    client = sdk(sdk_version, [a])
    for i, name in enumerate(services):
        assert client.call("register", service=name, ip=f"10.2.1.{i}", port=80)
    for i, name in enumerate(services):
        wait_listed(cluster, name, {(f"10.2.1.{i}", 80)})

    client.call("shutdown")
    closed = time.monotonic()
    left: dict[tuple[str, str], float] = {}
    end = closed + 2 * WITHIN_S
    while len(left) < len(cluster) * len(services) and time.monotonic() < end:
        for node in cluster:
            for name in services:
                if (node.address, name) not in left and not listed(node, name):
                    left[(node.address, name)] = time.monotonic() - closed
        time.sleep(0.02)
    print(f"clean close on A seen on every member after {max(left.values(), default=-1):.3f}s")
    assert len(left) == len(cluster) * len(services), f"still listed somewhere: {left}"
    assert max(left.values()) <= WITHIN_S, left


# -- push across members ---------------------------------------------------------------------


def test_a_subscriber_on_b_is_pushed_changes_made_through_c(
    cluster: list[NodeProcess], sdk: MakeClient, sdk_version: str, svc: str
) -> None:
    _, b, c = cluster
    subscriber = sdk(sdk_version, [b])
    subscriber.call("subscribe", service=svc)
    writer = sdk(sdk_version, [c])

    def hosts_are(ips: set[str]) -> Callable[[dict[str, Any]], bool]:
        return lambda p: p["service"] == svc and {h["ip"] for h in p["hosts"]} == ips

    before, seen = time.time(), len(subscriber.pushes())
    assert writer.call("register", service=svc, ip="10.2.2.1", port=80)
    push = subscriber.wait_push(hosts_are({"10.2.2.1"}), timeout_s=10, since=seen)
    over_sdk = push["t"] - before

    # The same through C's v1 HTTP API (a persistent instance: no beats needed).
    before, seen = time.time(), len(subscriber.pushes())
    added = c.api(
        "POST",
        "/instance",
        {"serviceName": svc, "ip": "10.2.2.2", "port": 80, "ephemeral": "false"},
    )
    assert added.status == 200, added.text
    push = subscriber.wait_push(hosts_are({"10.2.2.1", "10.2.2.2"}), timeout_s=10, since=seen)
    over_http = push["t"] - before
    print(f"push B<-C: {over_sdk:.3f}s after an SDK register, {over_http:.3f}s after v1 HTTP")
    assert over_sdk <= WITHIN_S and over_http <= WITHIN_S, (over_sdk, over_http)

    removed = c.api(
        "DELETE",
        "/instance",
        {"serviceName": svc, "ip": "10.2.2.2", "port": 80, "ephemeral": "false"},
    )
    assert removed.status == 200, removed.text
    subscriber.wait_push(hosts_are({"10.2.2.1"}), timeout_s=10, since=seen)


# -- a member dies ---------------------------------------------------------------------------


def member_of(nodes: list[NodeProcess], client: SdkClient) -> int:
    """The index of the member holding the client's connection (its operator list)."""
    connection = client.call("connection_id")

    def holder() -> NodeProcess | None:  # not the index: wait_for wants a true value
        for node in nodes:
            result = node.request(
                "GET", "/nacos/v1/core/loader/current", {"accessToken": node.token()}, timeout=5
            )
            assert result.status == 200, result.text
            if connection in result.json():
                return node
        return None

    found = wait_for(holder, 10, message=f"the member holding connection {connection}")
    assert found is not None
    return nodes.index(found)


@dataclass
class Mover:
    client: SdkClient  # given all three addresses
    service: str  # its own, with one instance
    hosts: set[tuple[str, int]]
    member: int  # index of the member it connected to
    version: str


def movers_with_a_victim(
    cluster: list[NodeProcess], sdk: MakeClient, svc: str
) -> tuple[list[Mover], int]:
    """Clients given all three addresses, each registering a service of its own, started
    (versions in turn) until one member holds a client of each version: that member is the
    victim. The SDK picks its first server at random: this takes a few clients."""
    movers: list[Mover] = []
    while len(movers) < MAX_MOVERS:
        i = len(movers)
        version = SDK_VERSIONS[i % len(SDK_VERSIONS)]
        client = sdk(version, cluster)
        index = member_of(cluster, client)
        mover = Mover(client, f"{svc}-m{i}", {(f"10.3.0.{i}", 80)}, index, version)
        assert client.call("register", service=mover.service, ip=f"10.3.0.{i}", port=80)
        movers.append(mover)
        if {m.version for m in movers if m.member == index} == set(SDK_VERSIONS):
            return movers, index
    raise AssertionError(f"no member got a client of each version: {movers}")


@pytest.mark.slow
def test_killing_a_member_moves_its_clients_and_removes_orphans_after_the_grace(
    cluster: list[NodeProcess], sdk: MakeClient, svc: str
) -> None:
    movers, victim_index = movers_with_a_victim(cluster, sdk, svc)
    victim = cluster[victim_index]
    survivors = [n for n in cluster if n is not victim]
    moved = [(m.client, m.service) for m in movers if m.member == victim_index]
    stayed = [(m.client, m.service) for m in movers if m.member != victim_index]

    # Clients that will not come back: one whose only address is the victim, one killed with it.
    stranded = sdk(SDK_VERSIONS[0], [victim])
    killed = sdk(SDK_VERSIONS[-1], [victim])
    orphans = [f"{svc}-stranded", f"{svc}-killed"]
    assert stranded.call("register", service=orphans[0], ip="10.3.1.1", port=80)
    assert killed.call("register", service=orphans[1], ip="10.3.1.2", port=80)

    expected = {m.service: m.hosts for m in movers}
    expected.update({orphans[0]: {("10.3.1.1", 80)}, orphans[1]: {("10.3.1.2", 80)}})
    for name, hosts in expected.items():
        wait_listed(cluster, name, hosts)

    victim.kill9()
    killed.kill9()
    died = time.monotonic()

    empty: list[tuple[float, str, str]] = []  # (time, member, service) of a mover listed empty
    orphan_gone: dict[tuple[str, str], float] = {}
    failover_s: float | None = None
    rounds = 0
    # Orphans must go by then: the grace, DOWN seen within a report round or two, a full reaper
    # walk at most every 10 s, and slack for a loaded box (CI saw 46.7 s with a 36 s grace).
    end = died + GRACE_S + 30
    while time.monotonic() < end:
        now = time.monotonic() - died
        rounds += 1
        for node in survivors:
            for _, name in [*moved, *stayed]:
                if listed(node, name) != expected[name]:
                    empty.append((now, node.address, name))
            for name in orphans:
                if (node.address, name) not in orphan_gone and not listed(node, name):
                    orphan_gone[(node.address, name)] = now
        if failover_s is None and sum(connection_counts(survivors)) == len(movers):
            failover_s = now
        # Keep watching the movers for a while after the orphans went: by then their old
        # instances (the dead member's leases) are gone too, only their redo keeps them listed.
        if len(orphan_gone) == len(survivors) * len(orphans) and now > GRACE_S + 3:
            break
        time.sleep(POLL_S)

    print(
        f"failover of {[m.version for m in movers if m.member == victim_index]}: every mover "
        f"connected to a survivor {failover_s}s after the kill; "
        f"orphans gone at {sorted(orphan_gone.values())} (grace {GRACE_S}s); {rounds} rounds"
    )
    assert empty == [], f"a moved client's service lost its instance on a survivor: {empty[:5]}"
    assert failover_s is not None, "the clients of the dead member did not reconnect"
    assert len(orphan_gone) == len(survivors) * len(orphans), (
        f"orphans still listed {GRACE_S + 30}s after the kill: {orphan_gone}"
    )
    # Removed no sooner than the grace (timed from when a survivor saw the member DOWN, which
    # is after the kill); how much later is printed above, not asserted (a loaded box's timing).
    assert min(orphan_gone.values()) >= GRACE_S - POLL_S, orphan_gone
    assert_converged(survivors)
    for client, name in moved:
        assert client.alive()
        [host] = client.call("list", service=name, subscribe=False)
        assert (host["ip"], host["port"]) in expected[name]


@pytest.mark.slow
def test_stopping_a_member_leaves_its_clients_instances_listed_while_they_move(
    cluster: list[NodeProcess], sdk: MakeClient, svc: str
) -> None:
    """A rolling restart: SIGTERM of a member holding connections. Its clients did not leave:
    their instances must stay listed (under the stopped member's lease, reaped after the grace
    if no redo replaces it) instead of being released, which would empty their services on
    every member until the redo (2.0.9: its 5 s keepalive; 3.2.0: its 30 s redo timer)."""
    movers, victim_index = movers_with_a_victim(cluster, sdk, svc)
    victim = cluster[victim_index]
    survivors = [n for n in cluster if n is not victim]
    for mover in movers:
        wait_listed(cluster, mover.service, mover.hosts)

    victim.stop()
    stopped = time.monotonic()
    lost: list[tuple[float, str, str]] = []
    failover_s: float | None = None
    # Until every client is connected to a survivor, and a little longer (bounded).
    while time.monotonic() < stopped + 30:
        now = time.monotonic() - stopped
        for node in survivors:
            for mover in movers:
                if listed(node, mover.service) != mover.hosts:
                    lost.append((now, node.address, mover.service))
        if failover_s is None and sum(connection_counts(survivors)) == len(movers):
            failover_s = now
        if failover_s is not None and now > failover_s + 2:
            break
        time.sleep(POLL_S)
    print(f"graceful stop: every mover connected to a survivor {failover_s}s after it")
    assert lost == [], f"a stopped member's client lost its instance on a survivor: {lost[:5]}"
    assert failover_s is not None, "the clients of the stopped member did not reconnect"
