"""Persistent data (Raft journal + dump through pysyncobj) across clean and hard restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.harness import NodeProcess

pytestmark = pytest.mark.xdist_group("restarts")


def persistent_state(node: NodeProcess, service: str) -> tuple[list[tuple[str, int, bool]], dict]:
    hosts = node.api("GET", "/instance/list", {"serviceName": service}).json()["hosts"]
    meta = node.api("GET", "/service", {"serviceName": service}).json()
    return sorted((h["ip"], h["port"], h["ephemeral"]) for h in hosts), meta


def write_persistent_data(node: NodeProcess, service: str) -> None:
    client = node.client()
    for port in (1, 2, 3):
        assert client.add_naming_instance(
            service, "127.0.0.1", port, cluster_name="DEFAULT", ephemeral=False
        )
    assert (
        node.api(
            "PUT",
            "/service",
            {"serviceName": service, "protectThreshold": "0.5", "metadata": "owner=ops"},
        ).text
        == "ok"
    )
    cluster = node.api(
        "PUT",
        "/cluster",
        {
            "serviceName": service,
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
            "healthChecker": '{"type":"NONE"}',
        },
    )
    assert cluster.text == "ok"
    assert (
        node.api("PUT", "/operator/switches", {"entry": "clientBeatInterval", "value": "7000"}).text
        == "ok"
    )


def assert_persistent_data(node: NodeProcess, service: str) -> None:
    hosts, meta = persistent_state(node, service)
    assert hosts == [("127.0.0.1", 1, False), ("127.0.0.1", 2, False), ("127.0.0.1", 3, False)]
    assert meta["protectThreshold"] == 0.5 and meta["metadata"] == {"owner": "ops"}
    assert meta["clusters"] == [
        {"name": "DEFAULT", "healthChecker": {"type": "NONE"}, "metadata": {}}
    ]
    switches = node.request("GET", "/nacos/v1/ns/operator/switches").json()
    assert switches["clientBeatInterval"] == 7000


def test_persistent_data_survives_sigterm_restart(tmp_path: Path):
    node = NodeProcess(tmp_path / "n").start()
    try:
        write_persistent_data(node, "persist-term")
        node.api("POST", "/instance", {"serviceName": "eph", "ip": "10.0.0.1", "port": 1})
        assert node.stop() == 0
        node.start()
        assert_persistent_data(node, "persist-term")
        # Ephemeral instances live in memory only (as in Nacos): gone after a restart.
        assert node.api("GET", "/instance/list", {"serviceName": "eph"}).json()["hosts"] == []
    finally:
        node.stop()
        node.kill9()


def test_acknowledged_persistent_writes_survive_kill9(tmp_path: Path):
    node = NodeProcess(tmp_path / "n").start()
    try:
        write_persistent_data(node, "persist-kill")
        node.kill9()
        node.start()
        assert_persistent_data(node, "persist-kill")
        # and once more, after further writes on the recovered journal
        node.api(
            "DELETE",
            "/instance",
            {"serviceName": "persist-kill", "ip": "127.0.0.1", "port": 3, "ephemeral": "false"},
        )
        node.kill9()
        node.start()
        hosts, _ = persistent_state(node, "persist-kill")
        assert hosts == [("127.0.0.1", 1, False), ("127.0.0.1", 2, False)]
    finally:
        node.stop()
        node.kill9()


def test_a_second_node_on_the_same_data_dir_refuses_to_start(tmp_path: Path):
    first = NodeProcess(tmp_path / "n").start()
    second = NodeProcess(tmp_path / "n")
    try:
        second.start(wait=False)
        assert second.proc is not None
        assert second.proc.wait(60) != 0
        assert "another node is running" in second.log()
    finally:
        second.kill9()
        first.stop()
        first.kill9()
