"""Non-voting Raft members (issue #13, Flynn's proxying nodes): 5 members, 3 of them voting.

Persistent writes go through every member, non-voters included (they forward to the leader),
and reach every living member; the leader is always a voter; killing both non-voters (kill -9)
costs no quorum, and neither does killing one voter after that (2 of 3 still vote); a
non-voter restarted then catches up and forwards writes again.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, leader_of, running_cluster, wait_for

pytestmark = pytest.mark.xdist_group("raft-nonvoters")  # ~20 s: not marked slow

SERVICE = "nv-ledger"
NONVOTERS = (3, 4)
_ports = itertools.count(21000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    base = Path(tmp_path_factory.mktemp("nonvoters"))
    with running_cluster(base, 5, nonvoters=NONVOTERS) as nodes:
        yield nodes


def alive(nodes: list[NodeProcess]) -> list[NodeProcess]:
    return [n for n in nodes if n.proc is not None and n.proc.poll() is None]


def register(node: NodeProcess) -> int:
    """One persistent instance through ``node``, retried while an election runs (503)."""
    port = next(_ports)
    params = {"serviceName": SERVICE, "ip": "127.0.0.1", "port": port, "ephemeral": "false"}

    def accepted() -> bool:
        result = node.api("POST", "/instance", params, timeout=15)
        assert result.status in (200, 503), result.text
        return result.status == 200

    wait_for(accepted, 30, interval_s=0.3, message=f"persistent write through {node.address}")
    return port


def listed(node: NodeProcess) -> set[int]:
    result = node.api("GET", "/instance/list", {"serviceName": SERVICE})
    if result.status != 200:
        return set()
    return {h["port"] for h in result.json()["hosts"]}


def assert_everywhere(nodes: list[NodeProcess], ports: set[int]) -> None:
    for node in alive(nodes):
        wait_for(
            functools.partial(holds_all, node, ports),
            20,
            message=f"{len(ports)} persistent instances on {node.address}",
        )


def holds_all(node: NodeProcess, ports: set[int]) -> bool:
    return ports <= listed(node)


def assert_leader_votes(nodes: list[NodeProcess]) -> NodeProcess:
    leader = leader_of(alive(nodes))
    assert nodes.index(leader) not in NONVOTERS
    return leader


def test_status_names_voters_and_each_members_role(cluster: list[NodeProcess]):
    voters = [n.address for i, n in enumerate(cluster) if i not in NONVOTERS]
    nonvoters = [cluster[i].address for i in NONVOTERS]
    for i, node in enumerate(cluster):
        state = node.request("GET", "/nacos/v1/ns/operator/cluster/state").json()
        raft = state["raft"]
        assert raft["voter"] is (i not in NONVOTERS)
        assert raft["voters"] == voters and raft["nonVoters"] == nonvoters
        assert raft["leader"] is not None
        servers = node.request("GET", "/nacos/v1/ns/operator/servers").json()["servers"]
        marks = {m["address"]: m["extendInfo"]["raftVoter"] for m in servers}
        assert marks == {a: a in voters for a in voters + nonvoters}
    leader = assert_leader_votes(cluster)
    # Every non-voter follows the leader: each voter sees both connected to it.
    wait_for(
        lambda: (
            leader.request("GET", "/nacos/v1/ns/operator/cluster/state").json()["raft"][
                "nonVotersConnected"
            ]
            == len(NONVOTERS)
        ),
        20,
        message="both non-voters connected to the leader",
    )


def test_writes_through_any_member_survive_losing_both_nonvoters_then_a_voter(
    cluster: list[NodeProcess],
):
    written = {register(node) for node in cluster}  # non-voters forward theirs
    assert_everywhere(cluster, written)
    assert_leader_votes(cluster)

    for i in NONVOTERS:
        cluster[i].kill9()
    for node in alive(cluster):
        written.add(register(node))
    assert_everywhere(cluster, written)
    leader = assert_leader_votes(cluster)

    leader.kill9()  # the hardest voter to lose: an election among the 2 left
    survivors = alive(cluster)
    assert len(survivors) == 2
    for node in survivors:
        written.add(register(node))
    assert_everywhere(cluster, written)
    assert_leader_votes(cluster)
    for node in survivors:
        raft = node.request("GET", "/nacos/v1/ns/operator/cluster/state").json()["raft"]
        assert raft["voter"] is True and raft["role"] in ("LEADER", "FOLLOWER")
        named = node.request("GET", "/nacos/v1/ns/raft/leader").json()["leader"]
        assert json.loads(named)["ip"] in {n.address for n in survivors}

    # A restarted non-voter replays its own journal and fetches what it missed from the leader.
    returned = cluster[NONVOTERS[0]].restart()
    assert_everywhere([returned], written)
    written.add(register(returned))
    assert_everywhere(cluster, written)
