"""The Nacos 2.x gRPC edge in-process: a real grpc.aio server over the in-memory runtime, driven
by a raw gRPC client (bytes in, bytes out), so each protocol rule is checked without an SDK. The
real SDKs are driven end to end in tests/e2e/test_grpc_sdk.py."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from facades.nacos_v2 import wire
from facades.nacos_v2.server import GrpcEdge, GrpcSettings
from naming.commands import RegisterInstance
from naming.domain import Instance, ServiceName
from node.runtime import NodeRuntime
from testkit.grpc_client import GrpcClient as Client
from testkit.grpc_client import payload

SERVICE = ServiceName("public", "DEFAULT_GROUP@@orders")


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def edge(node: NodeRuntime) -> Iterator[GrpcEdge]:
    server = GrpcEdge(
        node,
        "127.0.0.1",
        0,
        GrpcSettings(
            max_message_bytes=64 * 1024,
            idle_probe_s=60.0,  # the probe tests shorten it (``probing``)
            probe_timeout_s=0.4,
            push_merge_ms=5,
            push_timeout_s=0.3,
            push_retries=1,
        ),
    )
    node.attach_grpc(server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(edge: GrpcEdge) -> Iterator[Client]:
    c = Client(edge.port)
    try:
        yield c
    finally:
        c.close()


def register_body(ip: str = "10.0.0.1", port: int = 80, **extra: Any) -> dict[str, Any]:
    return {
        "namespace": "public",
        "serviceName": "orders",
        "groupName": "DEFAULT_GROUP",
        "type": "registerInstance",
        "instance": {"ip": ip, "port": port, "weight": 2.0, "metadata": {"v": 1}, **extra},
    }


def test_requests_before_setup_are_unregistered(client: Client):
    answer = client.request("InstanceRequest", **register_body())
    assert answer.type == "ErrorResponse"
    assert (answer.body["resultCode"], answer.body["errorCode"]) == (500, 301)


def test_register_binds_the_instance_to_the_connection(node: NodeRuntime, client: Client):
    conn_id = client.connect()
    answer = wait_for(lambda: _registered(client))
    assert answer.type == "InstanceResponse" and answer.body["resultCode"] == 200
    view = wait_for(lambda: node.registry.get(SERVICE))
    (inst,) = view.instances()
    assert (inst.ip, inst.port, inst.weight, dict(inst.metadata)) == (
        "10.0.0.1",
        80,
        2.0,
        {"v": "1"},
    )
    assert inst.lease.endswith("|" + conn_id)
    # A clean close releases it (on every member, through the core).
    client.close()
    wait_for(lambda: (v := node.registry.get(SERVICE)) is None or not v.instance_count)


def test_a_stopping_node_leaves_its_connections_instances_to_the_lease_grace(
    node: NodeRuntime, edge: GrpcEdge, client: Client
):
    """Its clients are moving to another member: a release would empty their services on
    every member until their redo; the other members reap the lease after the grace."""
    client.connect()
    wait_for(lambda: _registered(client))
    wait_for(lambda: node.registry.get(SERVICE))
    edge.stop()
    assert edge.stats.releases == 0
    view = node.registry.get(SERVICE)
    assert view is not None and view.instance_count == 1


def _registered(client: Client) -> wire.Inbound | None:
    answer = client.request("InstanceRequest", **register_body())
    return answer if answer.type == "InstanceResponse" else None


def test_subscribe_answers_the_service_and_pushes_changes(node: NodeRuntime, client: Client):
    client.connect()
    wait_for(lambda: _registered(client))
    answer = client.request(
        "SubscribeServiceRequest",
        namespace="public",
        serviceName="orders",
        groupName="DEFAULT_GROUP",
        subscribe=True,
        clusters="",
    )
    info = answer.body["serviceInfo"]
    assert (info["name"], info["groupName"]) == ("orders", "DEFAULT_GROUP")
    assert [h["ip"] for h in info["hosts"]] == ["10.0.0.1"]
    # A change from another edge (here: the core directly) reaches the subscriber's stream.
    node.operations.register_instance(RegisterInstance(SERVICE, Instance("10.0.0.2", 81)))
    push = client.next("NotifySubscriberRequest")
    assert sorted(h["ip"] for h in push.body["serviceInfo"]["hosts"]) == ["10.0.0.1", "10.0.0.2"]
    client.send("NotifySubscriberResponse", requestId=push.body["requestId"], resultCode=200)
    hub = node.grpc.push if node.grpc else None
    assert hub is not None
    wait_for(lambda: hub.stats.acked >= 1)


def test_an_unanswered_push_is_retried_then_given_up(node: NodeRuntime, client: Client):
    client.connect()
    wait_for(lambda: _registered(client))
    client.request("SubscribeServiceRequest", serviceName="orders", subscribe=True)
    node.operations.register_instance(RegisterInstance(SERVICE, Instance("10.0.0.3", 82)))
    first = client.next("NotifySubscriberRequest")
    again = client.next("NotifySubscriberRequest")  # not acked: sent again
    assert again.body["requestId"] != first.body["requestId"]
    hub = node.grpc.push if node.grpc else None
    assert hub is not None
    wait_for(lambda: hub.stats.gave_up >= 1)


def test_bad_input_gets_an_error_and_the_connection_survives(node: NodeRuntime, client: Client):
    client.connect()
    wait_for(lambda: _registered(client))
    garbage = client.raw(b"\xff\x00garbage")
    assert (garbage.type, garbage.body["errorCode"]) == ("ErrorResponse", 400)
    not_json = client.raw(payload("InstanceRequest", b"{not json"))
    assert not_json.body["errorCode"] == 400
    unknown = client.request("NoSuchRequest")
    assert (unknown.type, unknown.body["errorCode"]) == ("ErrorResponse", 302)
    for bad in (
        {"serviceName": "", "type": "registerInstance", "instance": {"ip": "1.1.1.1", "port": 1}},
        {"serviceName": "orders", "type": "registerInstance"},
        {"serviceName": "orders", "type": "registerInstance", "instance": {"ip": "x y", "port": 1}},
        {
            "serviceName": "orders",
            "type": "registerInstance",
            "instance": {"ip": "1.1.1.1", "port": 0},
        },
        {"serviceName": "orders", "type": "explode", "instance": {"ip": "1.1.1.1", "port": 1}},
        {
            "serviceName": "orders",
            "type": "registerInstance",
            "instance": {"ip": "1.1.1.1", "port": 1, "weight": "x"},
        },
    ):
        answer = client.request("InstanceRequest", **bad)
        assert answer.type == "InstanceResponse"
        assert (answer.body["resultCode"], answer.body["errorCode"]) == (500, 400), bad
        assert answer.body["message"]
    oversized = register_body()
    oversized["instance"]["metadata"] = {"k": "x" * 100_000}
    with pytest.raises(grpc.RpcError) as caught:
        client.request("InstanceRequest", **oversized)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # Nothing stored changed, and the same connection still works.
    view = node.registry.get(SERVICE)
    assert view is not None
    (inst,) = view.instances()
    assert (inst.ip, inst.port) == ("10.0.0.1", 80)
    assert client.request("HealthCheckRequest").type == "HealthCheckResponse"
    assert node.grpc is not None and node.grpc.stats.app_errors == 0


def probing(edge: GrpcEdge) -> None:
    edge.settings = dataclasses.replace(edge.settings, idle_probe_s=0.4)


def test_a_silent_connection_is_probed_then_dropped(
    node: NodeRuntime, edge: GrpcEdge, client: Client
):
    probing(edge)
    client.connect()
    wait_for(lambda: _registered(client))
    probe = client.next("ClientDetectionRequest")
    assert probe.body["requestId"]
    # Not answered: dropped, and its instance with it.
    wait_for(lambda: (v := node.registry.get(SERVICE)) is None or not v.instance_count)
    assert node.grpc is not None and node.grpc.connections.stats.ejected >= 1


def test_an_answered_probe_keeps_the_connection(node: NodeRuntime, edge: GrpcEdge, client: Client):
    probing(edge)
    client.connect()
    wait_for(lambda: _registered(client))
    for _ in range(3):
        probe = client.next("ClientDetectionRequest")
        client.send("ClientDetectionResponse", requestId=probe.body["requestId"], resultCode=200)
    view = node.registry.get(SERVICE)
    assert view is not None and view.instance_count == 1


def test_a_starting_node_answers_invalid_server_status(node: NodeRuntime, client: Client):
    node._ready.clear()
    answer = client.request("ServerCheckRequest")
    assert (answer.type, answer.body["errorCode"]) == ("ErrorResponse", 300)


def test_service_list_pages_names_without_their_group(node: NodeRuntime, client: Client):
    client.connect()
    for name in ("a", "b", "c"):
        service = ServiceName("public", f"G@@{name}")
        node.operations.register_instance(RegisterInstance(service, Instance("10.0.0.9", 1)))
    wait_for(lambda: len(node.registry.services("public")) == 3)
    answer = client.request(
        "ServiceListRequest", namespace="public", groupName="G", pageNo=2, pageSize=2
    )
    assert (answer.body["count"], answer.body["serviceNames"]) == (3, ["c"])


def test_the_operator_sees_the_connection(node: NodeRuntime, client: Client):
    conn_id = client.connect()
    wait_for(lambda: _registered(client))
    rows = node.report.connections()
    assert [r["connectionId"] for r in rows] == [conn_id]
    assert rows[0]["instances"] == 1 and rows[0]["labels"] == {"a": "b"}
    metrics = node.report.metrics()["grpc"]
    assert metrics["connections"] == 1


def test_the_schema_matches_the_sdk_generated_module():
    from google.protobuf import descriptor_pb2
    from v2.nacos.transport.grpcauto import nacos_grpc_service_pb2 as sdk  # the SDK's protoc output

    theirs = descriptor_pb2.FileDescriptorProto()
    sdk.DESCRIPTOR.CopyToProto(theirs)
    ours = wire.SCHEMA()
    assert [m for m in ours.message_type] == [
        m for m in theirs.message_type if m.name in ("Metadata", "Payload")
    ]
    payload = sdk.Payload(metadata=sdk.Metadata(type="X", clientIp="1.2.3.4", headers={"a": "b"}))
    payload.body.value = json.dumps({"k": 1}).encode()
    assert wire.decode(payload.SerializeToString()) == wire.Inbound(
        "X", {"a": "b"}, "1.2.3.4", {"k": 1}
    )


def test_the_loader_endpoint_lists_connections_by_id(node: NodeRuntime, client: Client):
    from django.test import Client as HttpClient

    conn_id = client.connect()
    wait_for(lambda: node.report.connections())
    listed = HttpClient().get("/nacos/v1/core/loader/current").json()
    assert list(listed) == [conn_id]
    assert listed[conn_id]["version"] == "test"


def test_checked_but_never_set_up_transports_are_capped_oldest_first(node: NodeRuntime):
    # Each ServerCheck costs its sender only a TCP connection it may close at once: the ones
    # never set up are capped (at the connection limit), not only forgotten after their TTL.
    small = GrpcEdge(node, "127.0.0.1", 0, GrpcSettings(max_connections=2))
    node.attach_grpc(small)
    small.start()
    clients = [Client(small.port) for _ in range(4)]
    try:
        for c in clients:
            assert c.request("ServerCheckRequest").type == "ServerCheckResponse"
        status = small.status()
        assert status["unsetup"] == 2 and status["connectionEvents"]["unsetup_evicted"] == 2
        assert {c.peer for c in small.connections.unsetup.values()} == {
            p for p in small.connections.by_peer
        }
        # The first, forgotten, still sets up its stream and is served.
        first = clients[0]
        first.open_stream()
        first.send("ConnectionSetupRequest", clientVersion="test", tenant="", labels={})
        first.ready()
        assert first.request("InstanceRequest", **register_body()).type == "InstanceResponse"
        status = small.status()
        assert status["connections"] == 1 and status["unsetup"] <= 2
    finally:
        for c in clients:
            c.close()
        small.stop()
