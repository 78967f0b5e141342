"""Distro under faults, with real node processes (slow: behind the ``slow`` marker, run in CI)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, assert_converged, make_cluster, stop_cluster, wait_for
from testkit.netns import NetnsLab
from tests.cluster.distro_support import (
    Beater,
    hosts,
    metrics,
    owner_address,
    ports,
    ports_are,
    service_owned_by,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("distro-faults")]


def test_killing_the_owner_never_expires_instances_that_keep_beating_through_survivors(
    tmp_path: Path,
):
    nodes = make_cluster(tmp_path, 3)
    beaters: list[Beater] = []
    try:
        owner = nodes[0]
        survivors = nodes[1:]
        service = service_owned_by(nodes, owner, "kill-owner")
        client = survivors[0].client()
        for port in (1, 2, 3):
            assert client.add_naming_instance(service, "10.0.7.1", port, cluster_name="DEFAULT")
        for node in nodes:
            wait_for(functools.partial(ports_are, node, service, {1, 2, 3}), 10, 0.05)
        beaters = [Beater(survivors, service, "10.0.7.1", p).start() for p in (1, 2, 3)]

        owner.kill9()
        # Past both the 15 s unhealthy and the 30 s removal timeouts of the old owner's beats.
        end = time.monotonic() + 36
        checks = 0
        while time.monotonic() < end:
            for node in survivors:
                listed = sorted((h["port"], h["healthy"]) for h in hosts(node, service))
                assert listed == [(1, True), (2, True), (3, True)], (node.address, listed)
                checks += 1
            time.sleep(0.5)
        assert checks > 100
        new_owner = owner_address(survivors, service)
        assert metrics(next(n for n in survivors if n.address == new_owner))["status"] == "UP"

        owner.start()  # waits for UP: the snapshot is loaded before it serves
        snapshot = metrics(owner)["distro"]["snapshot"]
        assert snapshot["source"] in {n.address for n in survivors} and snapshot["datums"] >= 1
        assert sorted((h["port"], h["healthy"]) for h in hosts(owner, service)) == [
            (1, True),
            (2, True),
            (3, True),
        ]
        assert_converged(nodes)
        # And it stays so once the restarted member owns the service again.
        time.sleep(8)
        for node in nodes:
            assert ports(node, service) == {1, 2, 3}
        assert_converged(nodes)
        answers = [status for b in beaters for _, status in b.answers]
        assert answers.count(200) > 0.8 * len(answers), answers
    finally:
        for beater in beaters:
            beater.stop()
        stop_cluster(nodes)


def test_a_write_for_an_unreachable_owner_gets_503_and_is_not_written_locally(tmp_path: Path):
    # Reports every 60 s: nobody learns of the death from membership, only from the forward.
    nodes = make_cluster(tmp_path, 3, env={"NAMING_MEMBER_REPORT_INTERVAL_S": "60"})
    try:
        owner, other, _ = nodes
        service = service_owned_by(nodes, owner, "dead-owner")
        owner.kill9()
        params = {"serviceName": service, "ip": "10.0.8.1", "port": 8}
        refused = other.api("POST", "/instance", params)
        assert refused.status == 503
        assert "unreachable" in refused.text and owner.address in refused.text
        assert ports(other, service) == set()
        # The refused connection marked the owner DOWN: the retry goes to the new owner.
        retried = other.api("POST", "/instance", params)
        assert (retried.status, retried.text) == (200, "ok")
        for node in nodes[1:]:
            wait_for(functools.partial(ports_are, node, service, {8}), 10, 0.05)
    finally:
        stop_cluster(nodes)


LONG_LIVED = '{"preserved.heart.beat.timeout":"600000","preserved.ip.delete.timeout":"600000"}'


def member_state(observer: NodeProcess, member: NodeProcess) -> str:
    data = observer.request("GET", "/nacos/v1/core/cluster/nodes", timeout=3).json()["data"]
    return str(next(m["state"] for m in data if m["address"] == member.address))


def test_a_member_cut_off_by_the_network_catches_up_after_it_heals(tmp_path: Path, lab: NetnsLab):
    nodes = make_cluster(tmp_path, 3, hosts=[lab.host(i) for i in range(3)])
    try:
        owner, _, cut = nodes
        service = service_owned_by(nodes, owner, "partition")

        def register(port: int) -> None:
            params = {"serviceName": service, "ip": "10.0.9.9", "port": port}
            result = owner.api("POST", "/instance", {**params, "metadata": LONG_LIVED})
            assert result.text == "ok"

        register(1)
        for node in nodes:
            wait_for(functools.partial(ports_are, node, service, {1}), 10, 0.05)
        lab.isolate(2)
        register(2)
        register(3)
        for node in nodes[:2]:
            wait_for(functools.partial(ports_are, node, service, {1, 2, 3}), 10, 0.05)
        wait_for(lambda: member_state(owner, cut) == "DOWN", 30, 0.2, "the cut member DOWN")
        assert metrics(owner)["distro"]["healthyMembers"] == sorted(n.address for n in nodes[:2])

        lab.heal(2)
        wait_for(lambda: member_state(owner, cut) == "UP", 30, 0.2, "the healed member UP")
        wait_for(functools.partial(ports_are, cut, service, {1, 2, 3}), 30, 0.1)
        assert_converged(nodes, 30)
    finally:
        stop_cluster(nodes)
