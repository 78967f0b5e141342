"""The SDK driver's line protocol (testkit/nacos_sdk_driver.py, testkit/nacos_sdk.py), no server.

In process: the driver's commands over a fake naming service (argument mapping, one callback
for subscribe and unsubscribe, push lines). As a child: replies, errors and exits through
``SdkClient`` with the 2.0.9 SDK of .venv (a second of start-up; no network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testkit.nacos_sdk import SdkClient, SdkError
from testkit.nacos_sdk_driver import Driver, host_dict
from testkit.own_loop import run_on_own_thread


class FakeNaming:
    """Records the SDK parameter objects the driver builds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def register_instance(self, param: Any) -> bool:
        self.calls.append(("register", param))
        return True

    async def deregister_instance(self, param: Any) -> bool:
        self.calls.append(("deregister", param))
        return True

    async def batch_register_instances(self, param: Any) -> bool:
        self.calls.append(("batch", param))
        return True

    async def subscribe(self, param: Any) -> None:
        self.calls.append(("subscribe", param))

    async def unsubscribe(self, param: Any) -> None:
        self.calls.append(("unsubscribe", param))

    async def list_instances(self, param: Any) -> list[Any]:
        from v2.nacos import Instance

        self.calls.append(("list", param))
        return [Instance(ip="10.0.0.1", port=80, clusterName="c1", metadata={"k": "v"})]

    async def shutdown(self) -> None:
        self.calls.append(("shutdown", None))


def run(driver: Driver, command: str, **args: Any) -> Any:
    return run_on_own_thread(lambda: driver.handlers[command](args))


@pytest.fixture
def driver() -> Driver:
    d = Driver()
    d.naming = FakeNaming()
    return d


def test_register_maps_the_driver_names_to_the_sdk_parameters(driver: Driver) -> None:
    assert run(
        driver,
        "register",
        service="svc",
        group="G",
        ip="10.0.0.1",
        port=8080,
        cluster="c1",
        weight=2.0,
        metadata={"k": "v"},
        ephemeral=False,
        healthy=False,
        enabled=False,
    )
    name, param = driver.naming.calls[0]
    assert name == "register"
    assert (param.service_name, param.group_name, param.cluster_name) == ("svc", "G", "c1")
    assert (param.ip, param.port, param.weight, param.metadata) == (
        "10.0.0.1",
        8080,
        2.0,
        {"k": "v"},
    )
    assert (param.ephemeral, param.healthy, param.enabled) == (False, False, False)

    run(driver, "deregister", service="svc", ip="10.0.0.1", port=8080, metadata={"ignored": "1"})
    name, param = driver.naming.calls[1]
    assert (name, param.group_name, param.cluster_name) == ("deregister", "DEFAULT_GROUP", "")


def test_batch_register_names_the_service_on_every_instance(driver: Driver) -> None:
    run(
        driver,
        "batch_register",
        service="svc",
        instances=[{"ip": "10.0.0.1", "port": 1}, {"ip": "10.0.0.2", "port": 2, "cluster": "c"}],
    )
    _, param = driver.naming.calls[0]
    assert param.service_name == "svc"
    assert [(i.service_name, i.ip, i.cluster_name) for i in param.instances] == [
        ("svc", "10.0.0.1", ""),
        ("svc", "10.0.0.2", "c"),
    ]
    with pytest.raises(KeyError):
        run(driver, "batch_register", service="svc", instances=[{"port": 1}])  # no ip
    with pytest.raises(NotImplementedError):  # 3.x only; FakeNaming is 2.0.9-shaped
        run(driver, "batch_deregister", service="svc", instances=[])


def test_list_passes_healthy_only_none_and_returns_plain_hosts(driver: Driver) -> None:
    hosts = run(driver, "list", service="svc", clusters=["c1"])
    _, param = driver.naming.calls[0]
    assert (param.healthy_only, param.subscribe, param.clusters) == (None, True, ["c1"])
    assert hosts[0]["ip"] == "10.0.0.1" and hosts[0]["clusterName"] == "c1"
    assert json.loads(json.dumps(hosts)) == hosts


def test_subscribe_and_unsubscribe_hand_the_sdk_one_callback_that_prints_pushes(
    driver: Driver, capsys: pytest.CaptureFixture[str]
) -> None:
    from v2.nacos import Instance

    run(driver, "subscribe", service="svc", clusters=["c1"])
    callback = driver.naming.calls[0][1].subscribe_callback
    run_on_own_thread(lambda: callback([Instance(ip="10.0.0.9", port=9)]))
    push = json.loads(capsys.readouterr().out)
    assert push["event"] == "push" and push["service"] == "svc" and push["group"] == "DEFAULT_GROUP"
    assert push["clusters"] == ["c1"] and push["hosts"][0]["ip"] == "10.0.0.9"
    assert isinstance(push["t"], float)

    run(driver, "unsubscribe", service="svc", clusters=["c1"])
    assert driver.naming.calls[1][1].subscribe_callback is callback


def test_host_dict_is_json() -> None:
    from v2.nacos import Instance

    host = host_dict(Instance(ip="10.0.0.1", port=1, metadata={"a": "b"}))
    assert json.loads(json.dumps(host)) == host


def test_the_child_answers_each_command_by_id_and_reports_errors(tmp_path: Path) -> None:
    with SdkClient("2.0.9", log_dir=tmp_path) as client:
        assert client.call("version")["sdk"] == "2.0.9"
        with pytest.raises(SdkError) as refused:
            client.call("register", service="s", ip="10.0.0.1", port=1)
        assert refused.value.error == "RuntimeError: not started: send start first"
        with pytest.raises(SdkError) as unknown:
            client.call("no-such-command")
        assert unknown.value.error.startswith("ValueError: unknown command")
        assert client.call("connection_id") is None
        pid = client.pid
    assert client.proc.returncode == 0, client.log()
    assert pid > 0


def test_a_killed_child_fails_the_next_call_instead_of_hanging(tmp_path: Path) -> None:
    client = SdkClient("2.0.9", log_dir=tmp_path)
    try:
        client.kill9()
        with pytest.raises(AssertionError, match="driver"):
            client.call("version", timeout_s=5)
    finally:
        client.close()
