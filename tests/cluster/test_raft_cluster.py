"""A 3-member Raft cluster of real node processes: persistent data (issue #4)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import (
    NodeProcess,
    leader_of,
    make_cluster,
    running_cluster,
    stop_cluster,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("raft-cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with running_cluster(Path(tmp_path_factory.mktemp("raft"))) as nodes:
        yield nodes


def service_exists(node: NodeProcess, service: str) -> bool:
    return bool(node.api("GET", "/service", {"serviceName": service}).status == 200)


def has_ports(node: NodeProcess, service: str, ports: set[int]) -> bool:
    return ports_listed(node, service) == ports


def ports_listed(node: NodeProcess, service: str) -> set[int]:
    hosts = node.api("GET", "/instance/list", {"serviceName": service}).json()["hosts"]
    return {h["port"] for h in hosts}


def test_persistent_instances_registered_through_each_node_are_listed_by_all(
    cluster: list[NodeProcess],
):
    for i, node in enumerate(cluster):
        assert node.client().add_naming_instance(
            "raft-svc", "127.0.0.1", 20000 + i, cluster_name="DEFAULT", ephemeral=False
        )
    for node in cluster:
        wait_for(
            functools.partial(has_ports, node, "raft-svc", {20000, 20001, 20002}),
            10,
            message=f"all instances on {node.address}",
        )


def test_a_write_acknowledged_by_a_follower_is_visible_there_at_once(cluster: list[NodeProcess]):
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    assert (
        follower.api(
            "POST", "/service", {"serviceName": "raft-follower-write", "protectThreshold": "0.4"}
        ).text
        == "ok"
    )
    got = follower.api("GET", "/service", {"serviceName": "raft-follower-write"}).json()
    assert got["protectThreshold"] == 0.4


def test_members_and_leader_are_reported(cluster: list[NodeProcess]):
    leader = leader_of(cluster)
    servers = cluster[0].request("GET", "/nacos/v1/ns/operator/servers").json()["servers"]
    assert sorted(s["address"] for s in servers) == sorted(n.address for n in cluster)
    assert all(s["state"] == "UP" for s in servers)
    state = leader.request("GET", "/nacos/v1/ns/operator/cluster/state").json()["raft"]
    assert state["role"] == "LEADER" and state["commitIndex"] >= 1


def test_without_quorum_a_write_fails_fast_with_503_and_nothing_is_lost(
    tmp_path: Path,
):
    nodes = make_cluster(tmp_path, 3)
    try:
        assert nodes[0].api("POST", "/service", {"serviceName": "before-loss"}).text == "ok"
        survivor = nodes[0]
        for node in nodes[1:]:
            node.kill9()
        started = time.monotonic()
        result = survivor.api("POST", "/service", {"serviceName": "without-quorum"}, timeout=30)
        elapsed = time.monotonic() - started
        assert result.status == 503, result.text
        assert elapsed < 12, elapsed
        # Ephemeral instances are AP: the lone member still takes and serves them.
        params = {"serviceName": "eph-without-quorum", "ip": "10.0.0.9", "port": 9}
        wait_for(
            lambda: survivor.api("POST", "/instance", params).text == "ok",
            10,
            message="an ephemeral write without quorum",
        )
        listed = survivor.api("GET", "/instance/list", {"serviceName": "eph-without-quorum"})
        assert [h["port"] for h in listed.json()["hosts"]] == [9]
        for node in nodes[1:]:
            node.start(wait=False)
        for node in nodes:
            node.wait_up()
        for node in nodes:
            assert node.api("GET", "/service", {"serviceName": "before-loss"}).status == 200
    finally:
        stop_cluster(nodes)


def test_a_cluster_node_refuses_to_start_without_the_secret(tmp_path: Path):
    node = NodeProcess(
        tmp_path / "n", members="127.0.0.1:1,127.0.0.1:2", env={"NAMING_CLUSTER_SECRET": ""}
    )
    node.members = f"127.0.0.1:{node.port},127.0.0.1:{node.port + 1}"
    node.start(wait=False)
    assert node.proc is not None and node.proc.wait(60) != 0
    assert "NAMING_CLUSTER_SECRET" in node.log()


def test_only_the_leader_probes_and_its_verdict_reaches_every_member(cluster: list[NodeProcess]):
    leader = leader_of(cluster)
    leader.client().add_naming_instance(
        "raft-dead", "127.0.0.1", 1, cluster_name="DEFAULT", ephemeral=False
    )

    def unhealthy_everywhere() -> bool:
        for node in cluster:
            body = node.api(
                "GET",
                "/catalog/instances",
                {"serviceName": "raft-dead", "clusterName": "DEFAULT", "pageNo": 1, "pageSize": 10},
            ).json()
            if [i["healthy"] for i in body["list"]] != [False]:
                return False
        return True

    wait_for(unhealthy_everywhere, 40, interval_s=0.5, message="verdict replicated")
    for node in cluster:
        checks = node.request("GET", "/nacos/v1/ns/operator/metrics").json()["health"]["checks"]
        assert (checks > 0) == (node is leader), (node.address, checks)
    state = cluster[0].request("GET", "/nacos/v1/ns/operator/cluster/state").json()
    assert state["leader"] == leader.address and len(state["members"]) == 3


def test_members_may_name_their_raft_ports(tmp_path: Path):
    nodes = make_cluster(tmp_path, 3, explicit_raft_ports=True)
    try:
        leader = leader_of(nodes)
        assert leader.api("POST", "/service", {"serviceName": "explicit-raft"}).text == "ok"
        for node in nodes:
            wait_for(
                functools.partial(service_exists, node, "explicit-raft"), 10, message="replicated"
            )
        peer = json.loads(leader.request("GET", "/nacos/v1/ns/raft/leader").json()["leader"])
        raft_port = int(peer["raftAddress"].rpartition(":")[2])
        assert raft_port != leader.port - 1000
    finally:
        stop_cluster(nodes)


def test_a_member_without_quorum_stays_starting_until_its_peers_arrive(tmp_path: Path):
    nodes = make_cluster(tmp_path, 3)
    try:
        for node in nodes:
            node.stop()
        lone = nodes[0].start(wait=False)
        time.sleep(4)
        assert lone.proc is not None and lone.proc.poll() is None
        metrics = lone.request("GET", "/nacos/v1/ns/operator/metrics").json()
        assert metrics["status"] == "STARTING"
        listed = lone.request("GET", "/nacos/v1/ns/instance/list", {"serviceName": "x"})
        assert listed.status == 503
        for node in nodes[1:]:
            node.start(wait=False)
        for node in nodes:
            node.wait_up()
    finally:
        stop_cluster(nodes)
