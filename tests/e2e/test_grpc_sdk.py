"""Issue #12 acceptance with the real Nacos 2.x Python SDKs over gRPC (HTTP port + 1000).

Every test runs with both ``v2.nacos`` clients: nacos-sdk-python 2.0.9 (``.venv``) and 3.2.0
(``.venv-sdk3``), each in a child process (testkit/nacos_sdk.py). The node has auth on, so every
client logs in over HTTP first and sends its token in the gRPC metadata. What the SDKs do on
their side (not the server's doing) is noted where a test depends on it:

- ``list`` with ``subscribe=False`` still subscribes (both versions), and reads the server.
- 3.2.0 filters clusters on the client and sends ``clusters=""``; 2.0.9 asks the server.
- A pushed empty list is dropped unless ``update_cache_when_empty`` (the driver turns it on).
- 3.2.0's ``start`` does not fail without a server (it reconnects in the background); the driver
  makes it fail as 2.0.9 does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, free_node_port, running_node, wait_for
from testkit.nacos_sdk import SDK_VERSIONS, SdkClient, SdkError

# The issue asks for a push to reach the subscriber's callback, and for a clean close to remove
# the connection's instances, within 1 s. Speed is shown by `python3 dev.py bench-grpc` (push
# latency p50/p99), not by timed assertions: on a loaded 2-core CI box a correct node can take
# longer, so the tests hold it to a bound that only a lost or stuck push would miss.
WITHIN_S = 5.0
# Server-side detection of a client that stopped answering: idle 20 s, probe 5 s, sweep 3 s.
DETECTION_S = 20 + 5 + 3

MakeClient = Callable[..., SdkClient]


@pytest.fixture(params=SDK_VERSIONS)
def sdk_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client_factory(
    version: str, default_node: NodeProcess, tmp_path: Path
) -> tuple[MakeClient, list[SdkClient]]:
    clients: list[SdkClient] = []

    def make(
        node: NodeProcess | None = None,
        username: str | None = "nacos",
        password: str | None = None,
        start: bool = True,
        **options: Any,
    ) -> SdkClient:
        target = node or default_node
        client = SdkClient(version, log_dir=tmp_path / f"sdk-{len(clients)}")
        clients.append(client)
        if start:
            client.start(
                [target.address],
                username=username,
                password=target.admin_password if password is None else password,
                **options,
            )
        return client

    return make, clients


@pytest.fixture
def sdk(sdk_version: str, node: NodeProcess, tmp_path: Path) -> Iterator[MakeClient]:
    """Makes started SDK clients of the parametrized version; closes them all afterwards."""
    make, clients = client_factory(sdk_version, node, tmp_path)
    yield make
    for client in clients:
        client.close()


def http_hosts(node: NodeProcess, svc: str, **params: Any) -> list[dict[str, Any]]:
    result = node.api("GET", "/instance/list", {"serviceName": svc, **params})
    assert result.status == 200, result.text
    return list(result.json()["hosts"])


def addresses(hosts: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(h["ip"], h["port"]) for h in hosts}


def wait_hosts(
    node: NodeProcess, svc: str, expected: set[tuple[str, int]], deadline_s: float = 10.0
) -> None:
    wait_for(
        lambda: addresses(http_hosts(node, svc)) == expected,
        deadline_s,
        message=f"{svc} to list {sorted(expected)} over HTTP",
    )


# -- connecting ------------------------------------------------------------------------------


def test_start_without_a_server_fails_cleanly(sdk_version: str, tmp_path: Path) -> None:
    with SdkClient(sdk_version, log_dir=tmp_path / "sdk") as client:
        with pytest.raises(SdkError) as failed:
            client.start([f"127.0.0.1:{free_node_port()}"], timeout_s=60)
        assert "connect" in failed.value.error
        assert client.call("version")["sdk"] == sdk_version  # the driver is still answering


def test_start_connects_and_the_server_is_healthy(sdk: MakeClient) -> None:
    client = sdk()
    assert client.call("connection_id")
    assert client.call("server_health") is True


# -- instances -------------------------------------------------------------------------------


def test_register_and_deregister(sdk: MakeClient, node: NodeProcess, svc: str) -> None:
    client = sdk()
    assert client.call(
        "register", service=svc, ip="10.0.0.1", port=8080, metadata={"k": "v"}, weight=2.0
    )
    wait_hosts(node, svc, {("10.0.0.1", 8080)})
    [host] = http_hosts(node, svc)
    assert host["metadata"] == {"k": "v"} and host["weight"] == 2.0
    assert host["ephemeral"] is True and host["healthy"] is True

    [listed] = client.call("list", service=svc, subscribe=False)
    assert (listed["ip"], listed["port"], listed["metadata"]) == ("10.0.0.1", 8080, {"k": "v"})

    assert client.call("deregister", service=svc, ip="10.0.0.1", port=8080)
    wait_hosts(node, svc, set())


def test_batch_register(sdk: MakeClient, sdk_version: str, node: NodeProcess, svc: str) -> None:
    client = sdk()
    batch: list[dict[str, Any]] = [{"ip": f"10.0.1.{i}", "port": 80 + i} for i in (1, 2, 3)]
    assert client.call("batch_register", service=svc, instances=batch)
    wait_hosts(node, svc, {(b["ip"], b["port"]) for b in batch})
    if sdk_version.startswith("3."):  # 3.x re-sends the batch minus the removed ones
        assert client.call("batch_deregister", service=svc, instances=batch[:1])
        wait_hosts(node, svc, {(b["ip"], b["port"]) for b in batch[1:]})


def test_persistent_register_outlives_the_connection(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    client = sdk()
    assert client.call("register", service=svc, ip="127.0.0.1", port=9, ephemeral=False)
    wait_hosts(node, svc, {("127.0.0.1", 9)})
    assert http_hosts(node, svc)[0]["ephemeral"] is False
    client.close()  # a persistent instance is not bound to the connection

    other = sdk()
    time.sleep(WITHIN_S)  # a connection-bound instance would be gone by now
    assert addresses(http_hosts(node, svc)) == {("127.0.0.1", 9)}
    assert other.call("deregister", service=svc, ip="127.0.0.1", port=9, ephemeral=False)
    wait_hosts(node, svc, set())


def test_list_with_healthy_and_cluster_filters(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    client = sdk()
    for ip, cluster, healthy in (
        ("10.0.2.1", "c1", True),
        ("10.0.2.2", "c2", True),
        ("10.0.2.3", "c1", False),
    ):
        assert client.call(
            "register", service=svc, ip=ip, port=80, cluster=cluster, healthy=healthy
        )
    wait_hosts(node, svc, {("10.0.2.1", 80), ("10.0.2.2", 80), ("10.0.2.3", 80)})

    def listed(**args: Any) -> set[str]:
        return {h["ip"] for h in client.call("list", service=svc, subscribe=False, **args)}

    assert listed() == {"10.0.2.1", "10.0.2.2", "10.0.2.3"}
    assert listed(clusters=["c1"]) == {"10.0.2.1", "10.0.2.3"}
    assert listed(clusters=["c1", "c2"]) == {"10.0.2.1", "10.0.2.2", "10.0.2.3"}
    # The SDK filters healthy_only itself (healthy == healthy_only, enabled, weight > 0).
    assert listed(healthy_only=True) == {"10.0.2.1", "10.0.2.2"}
    assert listed(healthy_only=False) == {"10.0.2.3"}
    assert listed(clusters=["c2"], healthy_only=True) == {"10.0.2.2"}
    service = client.call("get_service", service=svc, clusters=["c2"])
    assert service["name"] == svc and service["groupName"] == "DEFAULT_GROUP"
    assert {h["ip"] for h in service["hosts"]} == {"10.0.2.2"}


def test_service_list_pages(sdk: MakeClient, svc: str) -> None:
    client = sdk()
    group = f"G-{secrets.token_hex(3)}"
    names = {f"{svc}-a", f"{svc}-b"}
    for name in names:
        assert client.call("register", service=name, group=group, ip="10.0.3.1", port=80)

    def page(**args: Any) -> dict[str, Any]:
        return dict(client.call("list_services", **{"group": group, **args}))

    first = wait_for(lambda: page(page_size=10)["count"] == 2 and page(page_size=10), 10)
    assert set(first["services"]) == names
    one = page(page_no=1, page_size=1)
    two = page(page_no=2, page_size=1)
    assert one["count"] == two["count"] == 2
    assert set(one["services"]) | set(two["services"]) == names
    assert page(group=f"none-{group}")["services"] == []


# -- push ------------------------------------------------------------------------------------


def test_subscribe_pushes_changes_to_the_callback(sdk: MakeClient, svc: str) -> None:
    subscriber, writer = sdk(), sdk()
    subscriber.call("subscribe", service=svc)
    assert writer.call("register", service=svc, ip="10.0.4.1", port=80)
    subscriber.wait_push(lambda p: p["service"] == svc and len(p["hosts"]) == 1)

    before = time.time()
    seen = len(subscriber.pushes())
    assert writer.call("register", service=svc, ip="10.0.4.2", port=80)
    push = subscriber.wait_push(
        lambda p: p["service"] == svc and {h["ip"] for h in p["hosts"]} == {"10.0.4.1", "10.0.4.2"},
        timeout_s=10,
        since=seen,
    )
    assert push["t"] - before <= WITHIN_S, f"push took {push['t'] - before:.3f}s"

    before = time.time()
    seen = len(subscriber.pushes())
    assert writer.call("deregister", service=svc, ip="10.0.4.1", port=80)
    push = subscriber.wait_push(
        lambda p: p["service"] == svc and {h["ip"] for h in p["hosts"]} == {"10.0.4.2"},
        timeout_s=10,
        since=seen,
    )
    assert push["t"] - before <= WITHIN_S, f"push took {push['t'] - before:.3f}s"


def test_subscribing_pushes_the_current_state(sdk: MakeClient, svc: str) -> None:
    """Nacos 2.x pushes a new subscriber the service as it is (a push task for that client
    alone). 2.0.9 needs it: it drops the state in the subscribe response, so without this push
    its callback learns nothing until the service next changes (3.2.0 uses the response)."""
    subscriber, writer = sdk(), sdk()
    assert writer.call("register", service=svc, ip="10.0.15.1", port=80)
    subscriber.call("subscribe", service=svc)
    push = subscriber.wait_push(lambda p: p["service"] == svc)
    assert [h["ip"] for h in push["hosts"]] == ["10.0.15.1"]


def test_a_subscriber_sees_the_last_instance_go(sdk: MakeClient, svc: str) -> None:
    subscriber, writer = sdk(), sdk()
    subscriber.call("subscribe", service=svc)
    assert writer.call("register", service=svc, ip="10.0.5.1", port=80)
    subscriber.wait_push(lambda p: len(p["hosts"]) == 1)
    seen = len(subscriber.pushes())
    writer.close()  # the connection's instance goes with it
    subscriber.wait_push(lambda p: p["hosts"] == [], timeout_s=10, since=seen)


def test_cluster_subscription_pushes_only_that_cluster(sdk: MakeClient, svc: str) -> None:
    subscriber, writer = sdk(), sdk()
    subscriber.call("subscribe", service=svc, clusters=["c1"])
    assert writer.call("register", service=svc, ip="10.0.6.1", port=80, cluster="c1")
    assert writer.call("register", service=svc, ip="10.0.6.2", port=80, cluster="c2")
    push = subscriber.wait_push(lambda p: any(h["ip"] == "10.0.6.1" for h in p["hosts"]))
    assert {h["clusterName"] for h in push["hosts"]} == {"c1"}


def test_unsubscribe_stops_the_callback(sdk: MakeClient, svc: str) -> None:
    subscriber, writer = sdk(), sdk()
    subscriber.call("subscribe", service=svc)
    assert writer.call("register", service=svc, ip="10.0.7.1", port=80)
    subscriber.wait_push(lambda p: len(p["hosts"]) == 1)
    subscriber.call("unsubscribe", service=svc)
    seen = len(subscriber.pushes())
    assert writer.call("register", service=svc, ip="10.0.7.2", port=80)
    time.sleep(2.0)  # a push would arrive well within this
    assert subscriber.pushes()[seen:] == []


# -- the connection's life -------------------------------------------------------------------


def test_a_clean_close_removes_the_instances_at_once(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    client = sdk()
    assert client.call("register", service=svc, ip="10.0.8.1", port=80)
    assert client.call("register", service=f"{svc}-2", ip="10.0.8.2", port=80)
    wait_hosts(node, svc, {("10.0.8.1", 80)})
    wait_hosts(node, f"{svc}-2", {("10.0.8.2", 80)})

    client.call("shutdown")
    closed = time.monotonic()
    wait_hosts(node, svc, set(), deadline_s=10)
    wait_hosts(node, f"{svc}-2", set(), deadline_s=10)
    assert time.monotonic() - closed <= WITHIN_S + 0.5  # + the HTTP polls themselves


def test_a_killed_client_has_its_instances_removed(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    client = sdk()
    assert client.call("register", service=svc, ip="10.0.9.1", port=80)
    wait_hosts(node, svc, {("10.0.9.1", 80)})
    client.kill9()
    wait_hosts(node, svc, set(), deadline_s=DETECTION_S + 15)


@pytest.fixture(scope="module")
def detecting_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node that probes a silent connection after 2 s and drops it 2 s later."""
    env = {"NAMING_GRPC_IDLE_PROBE_S": "2", "NAMING_GRPC_PROBE_TIMEOUT_S": "2"}
    with running_node(Path(tmp_path_factory.mktemp("grpc-detect")), env=env) as started:
        yield started


@pytest.mark.slow
def test_a_hung_client_is_detected_and_its_instances_removed(
    sdk_version: str, detecting_node: NodeProcess, tmp_path: Path, svc: str
) -> None:
    """SIGSTOP keeps the TCP connection open: only the server's client detection can tell."""
    make, clients = client_factory(sdk_version, detecting_node, tmp_path)
    try:
        client = make()
        assert client.call("register", service=svc, ip="10.0.10.1", port=80)
        wait_hosts(detecting_node, svc, {("10.0.10.1", 80)})
        client.freeze()
        wait_hosts(detecting_node, svc, set(), deadline_s=30)
    finally:
        for one in clients:
            one.close()


# -- auth ------------------------------------------------------------------------------------


def test_auth_login_and_a_wrong_password(sdk: MakeClient, node: NodeProcess, svc: str) -> None:
    user = f"grpc-{secrets.token_hex(3)}"
    node.create_user(user, "right-pass-1")
    good = sdk(username=user, password="right-pass-1")
    assert good.call("register", service=svc, ip="10.0.11.1", port=80)
    wait_hosts(node, svc, {("10.0.11.1", 80)})

    bad = sdk(start=False)
    with pytest.raises(SdkError):
        # The SDK logs in lazily: start may pass, the first request carries no valid token.
        bad.start([node.address], username=user, password="wrong-pass-1")
        bad.call("register", service=svc, ip="10.0.11.2", port=80)
    assert addresses(http_hosts(node, svc)) == {("10.0.11.1", 80)}


def test_a_user_without_write_cannot_register(sdk: MakeClient, node: NodeProcess, svc: str) -> None:
    user = f"grpc-r-{secrets.token_hex(3)}"
    node.create_user(user, "reader-pass-1", ((":*:*", "r"),))
    reader = sdk(username=user, password="reader-pass-1")
    with pytest.raises(SdkError):
        reader.call("register", service=svc, ip="10.0.12.1", port=80)
    assert http_hosts(node, svc) == []
    assert reader.call("list", service=svc, subscribe=False) == []  # reading is allowed


# -- one registry for every client ------------------------------------------------------------


def test_registered_over_grpc_listed_by_the_v1_client(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    client = sdk()
    assert client.call("register", service=svc, ip="10.0.13.1", port=80, cluster="c1")
    v1 = node.client()
    hosts = wait_for(lambda: v1.list_naming_instance(svc)["hosts"], 10)
    assert [(h["ip"], h["port"], h["clusterName"]) for h in hosts] == [("10.0.13.1", 80, "c1")]


def test_registered_by_the_v1_client_listed_over_grpc(
    sdk: MakeClient, node: NodeProcess, svc: str
) -> None:
    v1 = node.client()
    assert v1.add_naming_instance(svc, "10.0.14.1", 80, cluster_name="c1", ephemeral=False)
    client = sdk()
    [host] = client.call("list", service=svc, subscribe=False)
    assert (host["ip"], host["port"], host["clusterName"]) == ("10.0.14.1", 80, "c1")
    assert host["ephemeral"] is False
    v1.remove_naming_instance(svc, "10.0.14.1", 80, cluster_name="c1", ephemeral=False)
