"""The scenarios of spec §F that take wall-clock time (heartbeat timeouts, auto-clean).

They use the default timeouts (15 s unhealthy, 30 s delete, 0.25 s expiry tick) on purpose, and
all of them share one node started with a short auto-clean period. Marked ``slow``; CI runs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, running_node, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("timing")]


@pytest.fixture(scope="module")
def timing_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {
        "NAMING_EMPTY_SERVICE_CLEAN_INITIAL_S": "1",
        "NAMING_EMPTY_SERVICE_CLEAN_PERIOD_S": "1",
        "NAMING_HEALTH_CHECK_INTERVAL_S": "1",
    }
    with running_node(Path(tmp_path_factory.mktemp("timing")), env=env) as node:
        yield node


def listed(node: NodeProcess, service: str, cluster: str | None = None) -> dict[str, bool]:
    params = {"serviceName": service, "healthyOnly": "false"}
    hosts = node.api("GET", "/instance/list", params).json()["hosts"]
    return {
        f"{h['ip']}@{h['clusterName']}": h["healthy"]
        for h in hosts
        if cluster is None or h["clusterName"] == cluster
    }


def expiry_times(
    node: NodeProcess,
    service: str,
    host: str,
    registered: float,
    deadline_s: float,
    interval_s: float,
) -> tuple[float, float]:
    """Seconds from ``registered`` until ``host`` is listed unhealthy, then until it is gone."""
    wait_for(
        lambda: listed(node, service).get(host) is False,
        deadline_s,
        interval_s=interval_s,
        message=f"{host} unhealthy",
    )
    unhealthy_after = time.monotonic() - registered
    wait_for(
        lambda: host not in listed(node, service),
        deadline_s,
        interval_s=interval_s,
        message=f"{host} removed",
    )
    return unhealthy_after, time.monotonic() - registered


def test_f5_beating_instance_stays_healthy_for_40_seconds(timing_node: NodeProcess):
    client = timing_node.client()
    client.add_naming_instance("f5", "10.5.0.1", 80, cluster_name="DEFAULT", heartbeat_interval=2)
    # A second, healthy instance keeps the protect threshold from masking an unhealthy one.
    client.add_naming_instance("f5", "10.5.0.2", 80, cluster_name="DEFAULT", heartbeat_interval=2)
    start = time.monotonic()
    while time.monotonic() - start < 40:
        assert listed(timing_node, "f5") == {"10.5.0.1@DEFAULT": True, "10.5.0.2@DEFAULT": True}
        time.sleep(4)
    client.remove_naming_instance("f5", "10.5.0.1", 80, cluster_name="DEFAULT")
    client.remove_naming_instance("f5", "10.5.0.2", 80, cluster_name="DEFAULT")


def test_f6_silent_instance_turns_unhealthy_then_disappears(timing_node: NodeProcess):
    client = timing_node.client()
    keeper = "10.6.0.9@DEFAULT"
    client.add_naming_instance("f6", "10.6.0.9", 80, cluster_name="DEFAULT", heartbeat_interval=2)
    registered = time.monotonic()
    client.add_naming_instance("f6", "10.6.0.1", 80, cluster_name="DEFAULT")
    unhealthy_after, removed_after = expiry_times(
        timing_node, "f6", "10.6.0.1@DEFAULT", registered, 25, 0.5
    )
    assert 15 <= unhealthy_after <= 21, unhealthy_after
    assert 30 <= removed_after <= 36, removed_after
    assert listed(timing_node, "f6")[keeper] is True
    client.remove_naming_instance("f6", "10.6.0.9", 80, cluster_name="DEFAULT")


def test_f8_preserved_timeouts_shorten_expiry(timing_node: NodeProcess):
    client = timing_node.client()
    client.add_naming_instance("f8", "10.8.0.9", 80, cluster_name="DEFAULT", heartbeat_interval=1)
    meta = {
        "preserved.heart.beat.interval": "1000",
        "preserved.heart.beat.timeout": "3000",
        "preserved.ip.delete.timeout": "6000",
    }
    registered = time.monotonic()
    client.add_naming_instance("f8", "10.8.0.1", 80, cluster_name="DEFAULT", metadata=meta)
    unhealthy_after, removed_after = expiry_times(
        timing_node, "f8", "10.8.0.1@DEFAULT", registered, 12, 0.25
    )
    assert 3 <= unhealthy_after <= 9, unhealthy_after
    assert 6 <= removed_after <= 12, removed_after
    client.remove_naming_instance("f8", "10.8.0.9", 80, cluster_name="DEFAULT")


def test_f13_cluster_none_quirk_leaves_only_the_default_instance(timing_node: NodeProcess):
    client = timing_node.client()
    assert client.add_naming_instance(
        "f13", "10.13.0.1", 80, cluster_name=None, heartbeat_interval=1
    )
    # The DEFAULT one comes with the first beat of the SDK's heartbeat thread.
    wait_for(
        lambda: set(listed(timing_node, "f13")) == {"10.13.0.1@None", "10.13.0.1@DEFAULT"},
        15,
        message="instances in clusters None and DEFAULT",
    )
    wait_for(
        lambda: set(listed(timing_node, "f13")) == {"10.13.0.1@DEFAULT"},
        40,
        interval_s=1,
        message="only the DEFAULT instance left",
    )
    client.remove_naming_instance("f13", "10.13.0.1", 80, cluster_name="DEFAULT")


def test_f23_empty_service_is_cleaned_automatically(timing_node: NodeProcess):
    client = timing_node.client()
    client.add_naming_instance("f23", "10.23.0.1", 80, cluster_name="DEFAULT")
    client.remove_naming_instance("f23", "10.23.0.1", 80, cluster_name="DEFAULT")

    def doms() -> list[str]:
        body = timing_node.api("GET", "/service/list", {"pageNo": 1, "pageSize": 1000}).json()
        return list(body["doms"])

    assert "f23" in doms()
    wait_for(lambda: "f23" not in doms(), 15, interval_s=0.5, message="auto-clean")


def stored_health(node: NodeProcess, service: str) -> dict[int, bool]:
    """The stored flag (catalog), not the protect-threshold view of instance/list."""
    body = node.api(
        "GET",
        "/catalog/instances",
        {"serviceName": service, "clusterName": "DEFAULT", "pageNo": 1, "pageSize": 100},
    ).json()
    return {i["port"]: i["healthy"] for i in body["list"]}


def test_active_checks_mark_a_dead_persistent_instance_unhealthy(timing_node: NodeProcess):
    """TCP check (the default): the node's own port answers, a closed port does not."""
    client = timing_node.client()
    client.add_naming_instance(
        "chk-tcp", "127.0.0.1", timing_node.port, cluster_name="DEFAULT", ephemeral=False
    )
    client.add_naming_instance("chk-tcp", "127.0.0.1", 1, cluster_name="DEFAULT", ephemeral=False)
    wait_for(
        lambda: stored_health(timing_node, "chk-tcp") == {timing_node.port: True, 1: False},
        20,
        interval_s=0.5,
        message="closed port unhealthy, open port healthy",
    )


def test_http_checks_follow_the_cluster_config_and_recover(timing_node: NodeProcess):
    client = timing_node.client()
    port = timing_node.port
    client.add_naming_instance(
        "chk-http", "127.0.0.1", port, cluster_name="DEFAULT", ephemeral=False
    )
    checker = '{"type":"HTTP","path":"/nacos/v1/ns/health/nope","expectedResponseCode":200}'
    put = timing_node.api(
        "PUT",
        "/cluster",
        {
            "serviceName": "chk-http",
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
            "healthChecker": checker,
        },
    )
    assert put.text == "ok"
    wait_for(
        lambda: stored_health(timing_node, "chk-http") == {port: False},
        20,
        interval_s=0.5,
        message="HTTP check fails on a 501 path",
    )
    checker = '{"type":"HTTP","path":"/nacos/v1/ns/health/server","expectedResponseCode":200}'
    timing_node.api(
        "PUT",
        "/cluster",
        {
            "serviceName": "chk-http",
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
            "healthChecker": checker,
        },
    )
    wait_for(
        lambda: stored_health(timing_node, "chk-http") == {port: True},
        20,
        interval_s=0.5,
        message="HTTP check recovers",
    )
