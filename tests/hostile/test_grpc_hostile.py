"""Hostile clients against the Nacos 2.x gRPC edge (issue #12, "Bad input"), on a real node.

A real ``manage.py runnode`` (auth on, as shipped) and raw gRPC clients (``testkit.grpc_client``:
bytes in, bytes out). Every case checks the same four things: the answer is an error response
with a message (or a stream the server closed, as Nacos does), the node stays UP, the edge counted
no unexpected exception (``grpc.edge.app_errors`` 0, HTTP ``appErrors`` 0, never a
``SERVER_ERROR`` 500), and nothing stored changed (every service and instance read back over v1
HTTP before and after). A guard connection holds an instance and a subscription for the whole
module, answering the server's probes like a live SDK.

The token TTL cannot be set below 60 s (``NAMING_TOKEN_TTL_S``), so the expired token is signed
with the node's own key and an ``exp`` in the past: exactly what a token is once its TTL passed.

Bounded: every wait has a deadline; the fuzz runs ``GRPC_FUZZ_EXAMPLES`` examples (derandomized).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facades.nacos_v2 import wire
from testkit.grpc_client import GrpcClient, payload
from testkit.harness import ROOT, NodeProcess, running_node, wait_for
from tests.hostile.test_fuzz import JSON_VALUES  # the HTTP fuzz's JSON values

GRPC_FUZZ_EXAMPLES = int(os.environ.get("GRPC_FUZZ_EXAMPLES", "150"))
MAX_MESSAGE = 16 * 1024
GUARD_NS = "hx-guard-ns"
GUARD_SERVICE = "hx-guard"
PERSISTED = "hx-persisted"

RESPONSE = {
    "InstanceRequest": "InstanceResponse",
    "PersistentInstanceRequest": "InstanceResponse",
    "BatchInstanceRequest": "BatchInstanceResponse",
    "SubscribeServiceRequest": "SubscribeServiceResponse",
    "ServiceQueryRequest": "QueryServiceResponse",
    "ServiceListRequest": "ServiceListResponse",
}
NAMING_TYPES = sorted(RESPONSE)
UN_REGISTER, NO_HANDLER, INVALID_PARAM, NO_RIGHT, SERVER_ERROR = 301, 302, 400, 403, 500


def grpc_port(node: NodeProcess) -> int:
    return node.port + 1000


def metrics(node: NodeProcess) -> dict[str, Any]:
    result: dict[str, Any] = node.request("GET", "/nacos/v1/ns/operator/metrics").json()
    return result


def edge_stats(node: NodeProcess) -> dict[str, Any]:
    grpc_status: dict[str, Any] = metrics(node)["grpc"]
    return grpc_status


def stored(node: NodeProcess) -> dict[str, Any]:
    """Everything stored, as a v1 HTTP client reads it: each namespace's services and every
    instance of each (without the times that move on their own)."""
    out: dict[str, Any] = {}
    for namespace in ("public", GUARD_NS):
        listed = node.api(
            "GET", "/catalog/services", {"namespaceId": namespace, "pageNo": 1, "pageSize": 1000}
        )
        assert listed.status == 200, listed.text
        for row in listed.json()["serviceList"]:
            name, group = row["name"], row["groupName"]
            found = node.api(
                "GET",
                "/instance/list",
                {
                    "namespaceId": namespace,
                    "serviceName": name,
                    "groupName": group,
                    "healthyOnly": "false",
                },
            )
            assert found.status == 200, found.text
            hosts = sorted(
                json.dumps(
                    {k: v for k, v in host.items() if k not in ("lastBeat", "instanceHeartBeat")},
                    sort_keys=True,
                )
                for host in found.json()["hosts"]
            )
            out[f"{namespace}/{group}@@{name}"] = hosts
    counts = metrics(node)
    out["#counts"] = (counts["serviceCount"], counts["instanceCount"])
    return out


def assert_unharmed(node: NodeProcess, before: dict[str, Any] | None) -> None:
    status = metrics(node)
    assert status["status"] == "UP"
    assert status["grpc"]["edge"]["app_errors"] == 0, node.log()
    assert status["http"]["appErrors"] == 0, node.log()
    if before is not None:
        assert stored(node) == before


def assert_error(
    answer: wire.Inbound, kind: str, code: int | tuple[int, ...], about: Any = ""
) -> None:
    codes = code if isinstance(code, tuple) else (code,)
    body = answer.body
    assert answer.type == kind, (about, answer)
    assert (body["resultCode"], body["errorCode"] in codes) == (500, True), (about, answer)
    assert isinstance(body["message"], str) and body["message"], (about, answer)


# -- the node, its guard data, clients ---------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"NAMING_GRPC_MAX_MESSAGE_BYTES": str(MAX_MESSAGE)}
    with running_node(Path(tmp_path_factory.mktemp("grpc-hostile")), env=env) as started:
        yield started


@pytest.fixture(scope="module")
def guard(node: NodeProcess) -> Iterator[GrpcClient]:
    """Data every test must leave as it was: a leased instance held by a live connection that
    also subscribes, a persistent service with metadata and a persistent instance (on the
    node's own port, so its TCP health check keeps it healthy)."""
    result = node.request("POST", "/nacos/v1/console/namespaces", {
        "customNamespaceId": GUARD_NS, "namespaceName": GUARD_NS, "accessToken": node.token()
    })  # fmt: skip
    assert result.status == 200, result.text
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()}, answer_probes=True)
    client.connect()
    for namespace in ("public", GUARD_NS):
        answer = client.request(
            "InstanceRequest",
            namespace=namespace,
            serviceName=GUARD_SERVICE,
            groupName="DEFAULT_GROUP",
            type="registerInstance",
            instance={"ip": "10.30.0.1", "port": 80, "weight": 2.0, "metadata": {"k": "v"}},
        )
        assert (answer.type, answer.body["resultCode"]) == ("InstanceResponse", 200), answer
        answer = client.request(
            "SubscribeServiceRequest",
            namespace=namespace,
            serviceName=GUARD_SERVICE,
            groupName="DEFAULT_GROUP",
            subscribe=True,
            clusters="",
        )
        assert answer.body["resultCode"] == 200, answer
    result = node.api("POST", "/service", {"serviceName": PERSISTED, "metadata": "k=v"})
    assert result.status == 200, result.text
    result = node.api(
        "POST",
        "/instance",
        {"serviceName": PERSISTED, "ip": "127.0.0.1", "port": node.port, "ephemeral": "false"},
    )
    assert result.status == 200, result.text
    wait_for(lambda: len(stored(node)) == 4, 15, message="the guard data stored")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def before(node: NodeProcess, guard: GrpcClient) -> dict[str, Any]:
    """What is stored when the test starts (guard data included)."""
    assert_unharmed(node, None)
    return stored(node)


@pytest.fixture
def admin(node: NodeProcess) -> Iterator[GrpcClient]:
    """A registered connection with the admin's token."""
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()})
    client.connect()
    try:
        yield client
    finally:
        client.close()


def valid_body(kind: str, namespace: str = "public") -> dict[str, Any]:
    """A body the server would accept (tests break one field of it)."""
    instance = {"ip": "10.30.9.9", "port": 81, "weight": 1.0, "clusterName": "DEFAULT"}
    service = {"namespace": namespace, "serviceName": "hx-target", "groupName": "DEFAULT_GROUP"}
    bodies: dict[str, dict[str, Any]] = {
        "InstanceRequest": {**service, "type": "registerInstance", "instance": instance},
        "PersistentInstanceRequest": {
            **service,
            "type": "registerInstance",
            "instance": {**instance, "ephemeral": False},
        },
        "BatchInstanceRequest": {
            **service,
            "type": "batchRegisterInstance",
            "instances": [instance],
        },
        "SubscribeServiceRequest": {**service, "subscribe": True, "clusters": ""},
        "ServiceQueryRequest": {**service, "cluster": "", "healthyOnly": False},
        "ServiceListRequest": {
            "namespace": namespace,
            "groupName": "DEFAULT_GROUP",
            "pageNo": 1,
            "pageSize": 10,
        },
    }
    return bodies[kind]


# -- bytes that are not a request ---------------------------------------------------------------


GARBAGE = [
    b"\xff\x00garbage",
    b"\x12\x05\x1a\x03abc",  # a metadata field cut short
    b"\x12\x03\x1a\x01\xff",  # a type name that is not UTF-8
    b"\x08\x96\x01" * 50,  # a varint where a message belongs
    bytes(range(256)),
    b"\x1a\xff\xff\xff\xff\x0f",  # a length far past the end
]


def test_garbage_payload_bytes_answer_an_error(
    node: NodeProcess, before: dict[str, Any], admin: GrpcClient
):
    fresh = GrpcClient(grpc_port(node))
    try:
        for client in (fresh, admin):
            for data in GARBAGE:
                assert_error(
                    client.raw(data), "ErrorResponse", (INVALID_PARAM, UN_REGISTER, NO_HANDLER)
                )
            # An empty payload is a valid one naming no type.
            assert_error(client.raw(b""), "ErrorResponse", (UN_REGISTER, NO_HANDLER))
    finally:
        fresh.close()
    assert admin.request("HealthCheckRequest").type == "HealthCheckResponse"
    assert_unharmed(node, before)


NOT_OBJECTS = [
    b"{not json",
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"null",
    b"\xff\xfe{}",
    b'{"a": 1',
    b"[" * 4_000 + b"]" * 4_000,
    b"[" * 8_000,
    b'{"a":' * 2_500 + b"1" + b"}" * 2_500,
    b'{"serviceName": "hx-target", "instance": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
]


@pytest.mark.parametrize("kind", NAMING_TYPES)
def test_bodies_that_are_not_a_json_object_answer_an_error(
    node: NodeProcess, before: dict[str, Any], admin: GrpcClient, kind: str
):
    for body in NOT_OBJECTS:
        answer = admin.raw(payload(kind, body, admin.headers))
        assert_error(answer, "ErrorResponse", INVALID_PARAM, body[:40])
    assert admin.request("HealthCheckRequest").type == "HealthCheckResponse"
    assert_unharmed(node, before)


UNKNOWN_TYPES = [
    "NoSuchRequest",
    "",
    "instancerequest",
    "InstanceRequest ",
    "ConnectionSetupRequest",  # a stream message sent as a unary request
    "NotifySubscriberResponse",
    "ServerCheckResponse",
    "ConfigQueryRequest",  # config is not served here
    "x" * 5_000,
    "\u202eInstanceRequest",
]


def test_unknown_request_types_answer_no_handler(
    node: NodeProcess, before: dict[str, Any], admin: GrpcClient
):
    for kind in UNKNOWN_TYPES:
        answer = admin.request(kind, **valid_body("InstanceRequest"))
        assert_error(answer, "ErrorResponse", NO_HANDLER)
        assert len(answer.body["message"]) < 200  # the type is not echoed whole
    assert_unharmed(node, before)


# -- missing and mistyped fields, every naming type ---------------------------------------------

SERVICE_BREAKS: list[dict[str, Any]] = [
    {"serviceName": None},
    {"serviceName": ""},
    {"serviceName": "   "},
    {"serviceName": 7},
    {"serviceName": ["hx-target"]},
    {"serviceName": {"a": 1}},
    {"serviceName": "x" * 5_000},
    {"serviceName": "@@hx-target"},
    {"serviceName": "hx-target@@"},
    {"serviceName": "hx target"},
    {"groupName": 3},
    {"groupName": ["G"]},
    {"namespace": 1},
    {"namespace": {"x": 1}},
]
INSTANCE_BREAKS: list[dict[str, Any]] = [
    {"ip": None},
    {"ip": ""},
    {"ip": 10},
    {"ip": "x y"},
    {"ip": "10.0.0.1\x00"},
    {"port": None},
    {"port": "80"},
    {"port": 80.5},
    {"port": 0},
    {"port": -1},
    {"port": 65536},
    {"port": 2**80},
    {"port": True},
    {"weight": "x"},
    {"weight": -1},
    {"weight": float("nan")},
    {"weight": float("inf")},
    {"weight": 1e400},
    {"weight": [1]},
    {"healthy": "yes"},
    {"enabled": 1},
    {"clusterName": 5},
    {"clusterName": "bad cluster!"},
    {"metadata": [1, 2]},
    {"metadata": "k=v"},
]


REQUIRED = {
    "InstanceRequest": ("serviceName", "type", "instance"),
    "PersistentInstanceRequest": ("serviceName", "type", "instance"),
    "BatchInstanceRequest": ("serviceName", "type", "instances"),
    "SubscribeServiceRequest": ("serviceName",),
    "ServiceQueryRequest": ("serviceName",),
    "ServiceListRequest": (),
}


def _broken(kind: str) -> list[dict[str, Any]]:
    """Invalid bodies: empty, one required field missing, or one field of a wrong type or value."""
    base = valid_body(kind)
    bodies: list[dict[str, Any]] = [
        {k: v for k, v in base.items() if k != name} for name in REQUIRED[kind]
    ]
    if kind == "ServiceListRequest":
        bodies += [{**base, "groupName": 3}, {**base, "namespace": 1}]
        for name in ("pageNo", "pageSize"):
            bodies += [{**base, name: v} for v in ("x", 0, -1, 1e400, -1e400, float("nan"), [1])]
        bodies += [{**base, "pageSize": 10**6}, {**base, "selector": 5}, {**base, "selector": [1]}]
        return bodies
    bodies.append({})
    bodies += [{**base, **change} for change in SERVICE_BREAKS]
    if kind in ("InstanceRequest", "PersistentInstanceRequest"):
        bodies += [{**base, "type": t} for t in (None, 5, "", "explode", "batchRegisterInstance")]
        values: tuple[Any, ...] = (None, [], "x", 5)
        bodies += [{**base, "instance": v} for v in values]
        bodies += [{**base, "instance": {**base["instance"], **c}} for c in INSTANCE_BREAKS]
        bodies += [{**base, "instance": {"ip": "10.30.9.9"}}, {**base, "instance": {"port": 81}}]
    if kind == "InstanceRequest":
        bodies.append({**base, "instance": {**base["instance"], "ephemeral": False}})
    if kind == "BatchInstanceRequest":
        bodies += [{**base, "type": t} for t in (None, 5, "registerInstance")]
        values = (None, {}, "x", 5, [None], [[]], ["x"])
        bodies += [{**base, "instances": v} for v in values]
        item = base["instances"][0]
        bodies += [{**base, "instances": [{**item, **c}]} for c in INSTANCE_BREAKS]
    if kind == "SubscribeServiceRequest":
        bodies += [{**base, "subscribe": v} for v in ("true", 1, [True])]
        bodies += [{**base, "clusters": v} for v in (5, ["DEFAULT"])]
    if kind == "ServiceQueryRequest":
        bodies += [{**base, "healthyOnly": v} for v in ("true", 1)]
        bodies += [{**base, "cluster": v} for v in (5, {"a": 1})]
    return bodies


@pytest.mark.parametrize("kind", NAMING_TYPES)
def test_missing_and_mistyped_fields_answer_invalid_param(
    node: NodeProcess, before: dict[str, Any], admin: GrpcClient, kind: str
):
    for body in _broken(kind):
        answer = admin.request(kind, **body)
        assert_error(answer, RESPONSE[kind], INVALID_PARAM, body)
    # The same connection still serves.
    ok = admin.request("ServiceQueryRequest", **valid_body("ServiceQueryRequest"))
    assert ok.body["resultCode"] == 200, ok
    assert_unharmed(node, before)


# -- oversized messages ---------------------------------------------------------------------


def test_oversized_messages_are_refused_and_the_node_serves_on(
    node: NodeProcess, before: dict[str, Any], admin: GrpcClient
):
    body = valid_body("InstanceRequest")
    body["instance"]["metadata"] = {"k": "x" * MAX_MESSAGE}
    with pytest.raises(grpc.RpcError) as caught:
        admin.request("InstanceRequest", **body)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert admin.request("HealthCheckRequest").type == "HealthCheckResponse"
    # On the stream: the server ends it (Nacos closes the connection), the others serve on.
    streaming = GrpcClient(grpc_port(node), {"accessToken": node.token()})
    try:
        streaming.connect()
        streaming.send_raw(payload("NotifySubscriberResponse", b"{}" + b" " * MAX_MESSAGE))
        assert streaming.ended.wait(10), "the stream was not closed"
        assert streaming.end_code is grpc.StatusCode.RESOURCE_EXHAUSTED
        wait_for(
            lambda: streaming.request("HealthCheckRequest").body["errorCode"] == UN_REGISTER,
            10,
            message="the connection dropped",
        )
    finally:
        streaming.close()
    assert admin.request("HealthCheckRequest").type == "HealthCheckResponse"
    assert_unharmed(node, before)


# -- the connection's life out of order --------------------------------------------------------


@pytest.mark.parametrize("kind", [*NAMING_TYPES, "HealthCheckRequest"])
def test_requests_before_setup_answer_un_register(
    node: NodeProcess, before: dict[str, Any], kind: str
):
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()})
    try:
        body = valid_body(kind) if kind in RESPONSE else {}
        # Before any ServerCheck, after it, and with a stream open but no setup sent on it.
        assert_error(client.request(kind, **body), "ErrorResponse", UN_REGISTER)
        assert client.request("ServerCheckRequest").type == "ServerCheckResponse"
        assert_error(client.request(kind, **body), "ErrorResponse", UN_REGISTER)
        client.open_stream()
        time.sleep(0.2)
        assert_error(client.request(kind, **body), "ErrorResponse", UN_REGISTER)
    finally:
        client.close()
    assert_unharmed(node, before)


def test_stream_messages_before_setup_are_ignored(node: NodeProcess, before: dict[str, Any]):
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()})
    try:
        assert client.request("ServerCheckRequest").type == "ServerCheckResponse"
        malformed = edge_stats(node)["edge"]["malformed"]
        client.open_stream()
        for data in GARBAGE[:3]:
            client.send_raw(data)
        client.send("NotifySubscriberResponse", requestId="1", resultCode=200)
        client.send("ClientDetectionResponse", requestId="2", resultCode=200)
        client.send("InstanceRequest", **valid_body("InstanceRequest"))
        client.send_raw(payload("InstanceRequest", b"[" * 5_000))
        wait_for(
            lambda: edge_stats(node)["edge"]["malformed"] >= malformed + 3,
            10,
            message="the garbage read",
        )
        assert not client.ended.is_set()
        assert_error(client.request("HealthCheckRequest"), "ErrorResponse", UN_REGISTER)
        assert_unharmed(node, before)
        # The setup that finally comes is served as usual.
        client.send("ConnectionSetupRequest", clientVersion="test", tenant="", labels={})
        client.ready()
    finally:
        client.close()
    assert_unharmed(node, before)


def test_a_second_setup_changes_nothing(node: NodeProcess, before: dict[str, Any]):
    registered = edge_stats(node)["connectionEvents"]["registered"]
    connections = edge_stats(node)["connections"]
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()}, client_ip="10.9.0.1")
    try:
        client.connect()
        client.send("ConnectionSetupRequest", clientVersion="evil", tenant="x", labels={"b": 1})
        client.send("ConnectionSetupRequest")
        answer = client.request("HealthCheckRequest")  # after the setups: the stream is ordered
        assert answer.type == "HealthCheckResponse"
        stats = edge_stats(node)
        assert stats["connectionEvents"]["registered"] == registered + 1
        assert stats["connections"] == connections + 1
        assert not client.ended.is_set()
        # A second stream on the same transport, its setup claiming another client address,
        # then ended: the connection (one per transport, as in Nacos) ends with it.
        other = payload("ConnectionSetupRequest", b"{}", client_ip="10.9.0.2")
        second: Any = client.channel.stream_stream("/BiRequestStream/requestBiStream")(
            iter([other])
        )
        with pytest.raises(StopIteration):
            next(second)
        assert client.ended.wait(10)
    finally:
        client.close()
    # The connection counted once and released once: its slot is free again.
    wait_for(lambda: edge_stats(node)["connections"] == connections, 10)
    time.sleep(0.5)
    assert edge_stats(node)["connections"] == connections
    assert_unharmed(node, before)


# -- tokens and rights ------------------------------------------------------------------------


def _signed(node: NodeProcess, claims: dict[str, Any], key: bytes | None = None) -> str:
    own = bytes.fromhex((node.data_dir / "token.key").read_text().strip())
    return jwt.encode(claims, key or own, "HS256")


@pytest.mark.parametrize("kind", NAMING_TYPES)
def test_expired_garbage_and_missing_tokens_answer_no_right(
    node: NodeProcess, before: dict[str, Any], kind: str
):
    now = int(time.time())
    tokens = {
        "token expired!": {
            "accessToken": _signed(node, {"sub": "nacos", "gen": 0, "exp": now - 5})
        },
        "token invalid!": {"accessToken": "garbage.token.value"},
        "forged": {
            "accessToken": _signed(node, {"sub": "nacos", "gen": 0, "exp": now + 99}, b"k" * 32)
        },
        "user not found!": {},
    }
    for expected, headers in tokens.items():
        client = GrpcClient(grpc_port(node), headers)
        try:
            client.connect()
            answer = client.request(kind, **valid_body(kind))
            assert_error(answer, RESPONSE[kind], NO_RIGHT)
            if expected != "forged":
                assert answer.body["message"] == expected
            # The token inside the JSON headers (the SDK sends it there too) is checked as well.
            inside = client.request(kind, **{**valid_body(kind), "headers": headers})
            assert_error(inside, RESPONSE[kind], NO_RIGHT)
        finally:
            client.close()
    assert_unharmed(node, before)


def test_a_user_without_write_cannot_register(node: NodeProcess, before: dict[str, Any]):
    node.create_user("hx-reader", "hx-reader-pw", grants=((":*:*", "r"),))
    node.create_user("hx-elsewhere", "hx-elsewhere-pw", grants=((f"{GUARD_NS}:*:*", "rw"),))
    for username in ("hx-reader", "hx-elsewhere"):
        login = node.request(
            "POST",
            "/nacos/v1/auth/users/login",
            {"username": username, "password": username + "-pw"},
        )
        assert login.status == 200, login.text
        client = GrpcClient(grpc_port(node), {"accessToken": login.json()["accessToken"]})
        try:
            client.connect()
            for kind in ("InstanceRequest", "PersistentInstanceRequest", "BatchInstanceRequest"):
                assert_error(client.request(kind, **valid_body(kind)), RESPONSE[kind], NO_RIGHT)
                deregister = valid_body(kind)
                if kind == "BatchInstanceRequest":
                    deregister["type"] = "batchDeregisterInstance"
                    deregister["instances"] = [{"ip": "10.30.0.1", "port": 80}]
                else:
                    deregister["type"] = "deregisterInstance"
                    deregister["instance"] = {"ip": "10.30.0.1", "port": 80}
                deregister["serviceName"] = GUARD_SERVICE
                assert_error(client.request(kind, **deregister), RESPONSE[kind], NO_RIGHT)
            read = client.request("ServiceQueryRequest", **valid_body("ServiceQueryRequest"))
            assert read.body["resultCode"] == (200 if username == "hx-reader" else 500), read
        finally:
            client.close()
    assert_unharmed(node, before)


# -- connection limits ------------------------------------------------------------------------


def _ready(client: GrpcClient) -> bool:
    return client.request("HealthCheckRequest").type == "HealthCheckResponse"


@pytest.mark.parametrize("limit_env", ["NAMING_GRPC_MAX_CONNECTIONS", "NAMING_GRPC_MAX_PER_CLIENT"])
def test_the_connection_over_a_limit_is_reset_and_closed(tmp_path: Path, limit_env: str):
    with running_node(tmp_path / "limits", env={limit_env: "2"}) as limited:
        token = limited.token()
        kept = [GrpcClient(grpc_port(limited), {"accessToken": token}) for _ in range(2)]
        # Each claims a client address of its own: the limit counts transport addresses.
        extra = [
            GrpcClient(grpc_port(limited), {"accessToken": token}, client_ip=f"10.9.9.{i}")
            for i in range(3)
        ]
        try:
            for client in kept:
                client.connect()
            body = valid_body("InstanceRequest")
            assert kept[0].request("InstanceRequest", **body).body["resultCode"] == 200
            before = stored(limited)
            for client in extra:
                client.connect(wait=False)
                reset = client.next("ConnectResetRequest", timeout=10)
                assert reset.body["requestId"]
                assert client.ended.wait(10), "the refused stream stayed open"
                assert_error(client.request("HealthCheckRequest"), "ErrorResponse", UN_REGISTER)
                assert_error(
                    client.request("InstanceRequest", **{**body, "serviceName": "hx-over"}),
                    "ErrorResponse",
                    UN_REGISTER,
                )
            for client in kept:
                assert _ready(client)
                assert not client.ended.is_set()
            stats = edge_stats(limited)
            assert stats["connections"] == 2
            refused = stats["connectionEvents"]
            assert refused["refused_total_limit"] + refused["refused_client_limit"] == 3
            assert_unharmed(limited, before)
            # A slot freed is a slot taken.
            kept[1].close()
            wait_for(lambda: edge_stats(limited)["connections"] == 1, 10)
            again = GrpcClient(grpc_port(limited), {"accessToken": token})
            extra.append(again)
            again.connect()
            assert_unharmed(limited, before)
        finally:
            for client in kept + extra:
                client.close()


# -- many streams, then the client vanishes -----------------------------------------------------

VANISHING = """
import sys, threading, time
from facades.nacos_v2 import wire
from tests.hostile.test_fuzz import JSON_VALUES  # the HTTP fuzz's JSON values
from testkit.grpc_client import GrpcClient
port, token, channels, streams = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
setup = wire.encode("ConnectionSetupRequest", {"clientVersion": "vanish", "labels": {}})
forever = threading.Event()

def hold():
    yield setup
    forever.wait()

clients, calls = [], []
for c in range(channels):
    client = GrpcClient(port, {"accessToken": token})
    client.connect()
    for _ in range(streams - 1):
        calls.append(client.channel.stream_stream("/BiRequestStream/requestBiStream")(hold()))
    client.ready()
    answer = client.request("InstanceRequest", namespace="public", serviceName="hx-vanish",
        groupName="DEFAULT_GROUP", type="registerInstance",
        instance={"ip": f"10.31.0.{c + 1}", "port": 80})
    assert answer.body["resultCode"] == 200, answer
    client.request("SubscribeServiceRequest", namespace="public", serviceName="hx-vanish",
        groupName="DEFAULT_GROUP", subscribe=True, clusters="")
    clients.append(client)
print("ready", flush=True)
time.sleep(120)
"""


def test_a_client_with_many_streams_that_vanishes_leaves_nothing(
    node: NodeProcess, before: dict[str, Any]
):
    baseline = edge_stats(node)
    channels, streams = 4, 25
    proc = subprocess.Popen(
        [sys.executable, "-c", VANISHING, str(grpc_port(node)), node.token(), str(channels),
         str(streams)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else b""
        during = edge_stats(node)
        assert during["connections"] == baseline["connections"] + channels
        assert len(stored(node)["public/DEFAULT_GROUP@@hx-vanish"]) == channels
    finally:
        proc.kill()  # SIGKILL: no goodbye on any stream
        proc.wait(10)

    def gone() -> bool:
        stats = edge_stats(node)
        hosts = stored(node).get("public/DEFAULT_GROUP@@hx-vanish", [])
        return (
            stats["connections"] == baseline["connections"]
            and stats["subscriptions"] == baseline["subscriptions"]
            and not hosts
        )

    wait_for(gone, 20, message="the vanished client's connections, instances, subscriptions gone")
    assert_unharmed(node, None)
    after = stored(node)
    after.pop("public/DEFAULT_GROUP@@hx-vanish", None)  # an empty service may stay a while
    assert {k: v for k, v in after.items() if k != "#counts"} == {
        k: v for k, v in before.items() if k != "#counts"
    }
    assert after["#counts"][1] == before["#counts"][1]


# -- fuzz --------------------------------------------------------------------------------------

HOSTILE = (
    st.sampled_from(
        ["", " ", "@@", "a@@b", "a##b", "x" * 600, "\x00", "\u202e", "NaN", "1e400", "[", "{}"]
    )
    | st.sampled_from([0, -1, 65536, 2**63, 1e400, -1e400, float("nan"), True, [], {}])
    | st.just("[" * 3_000)  # as a string value: deep only if something parses it again
    | JSON_VALUES
)
REMOVED = object()  # a broken field may also be missing

# Plausible values: most fields of a request are valid, so the hostile ones get as far as the
# code that reads them. Never a loopback address: a persistent instance there is health-checked.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "namespace": st.sampled_from(["", "public", "hx-fuzz"]),
    "serviceName": st.sampled_from(["hx-fz-a", "hx-fz-b", "G1@@hx-fz-c"]),
    "groupName": st.sampled_from(["DEFAULT_GROUP", "G1", ""]),
    "ip": st.sampled_from(["10.40.0.1", "10.40.0.2", "fd00::2"]),
    "port": st.sampled_from([80, 81, 65535]),
    "weight": st.sampled_from([1.0, 0.0, 2, 10000]),
    "healthy": st.booleans(),
    "enabled": st.booleans(),
    "ephemeral": st.booleans(),
    "clusterName": st.sampled_from(["DEFAULT", "C1"]),
    "metadata": st.dictionaries(st.sampled_from(["k", "v", ""]), st.text(max_size=8), max_size=2),
    "subscribe": st.booleans(),
    "clusters": st.sampled_from(["", "DEFAULT", "DEFAULT,C1"]),
    "cluster": st.sampled_from(["", "DEFAULT"]),
    "healthyOnly": st.booleans(),
    "udpPort": st.just(0),
    "pageNo": st.sampled_from([1, 2]),
    "pageSize": st.sampled_from([10, 10_000]),
    "selector": st.sampled_from(
        [
            None,
            "",
            {"type": "none"},
            {"type": "label", "expression": "CONSUMER.label.a = PROVIDER.label.a"},
        ]
    ),
}
INSTANCE_FIELDS = (
    "ip",
    "port",
    "weight",
    "healthy",
    "enabled",
    "ephemeral",
    "clusterName",
    "metadata",
)
SERVICE_FIELDS = ("namespace", "serviceName", "groupName")
TYPES = {
    "InstanceRequest": ["registerInstance", "deregisterInstance"],
    "PersistentInstanceRequest": ["registerInstance", "deregisterInstance"],
    "BatchInstanceRequest": ["batchRegisterInstance", "batchDeregisterInstance"],
}
FIELDS: dict[str, tuple[str, ...]] = {
    "InstanceRequest": (*SERVICE_FIELDS, "type", "instance"),
    "PersistentInstanceRequest": (*SERVICE_FIELDS, "type", "instance"),
    "BatchInstanceRequest": (*SERVICE_FIELDS, "type", "instances"),
    "SubscribeServiceRequest": (*SERVICE_FIELDS, "subscribe", "clusters"),
    "ServiceQueryRequest": (*SERVICE_FIELDS, "cluster", "healthyOnly", "udpPort"),
    "ServiceListRequest": ("namespace", "groupName", "pageNo", "pageSize", "selector"),
}


@st.composite
def broken(draw: st.DrawFn, names: tuple[str, ...], plausible: dict[str, Any]) -> dict[str, Any]:
    """``plausible`` with up to three of its fields given a hostile value, or removed."""
    out = dict(plausible)
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=3)):
        value = draw(HOSTILE | st.just(REMOVED))
        if value is REMOVED:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@st.composite
def instances(draw: st.DrawFn) -> dict[str, Any]:
    plausible = {name: draw(PLAUSIBLE[name]) for name in INSTANCE_FIELDS}
    return draw(broken((*INSTANCE_FIELDS, "instanceId", "serviceName"), plausible))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(NAMING_TYPES))
    plausible: dict[str, Any] = {}
    for name in FIELDS[kind]:
        if name == "type":
            plausible[name] = draw(st.sampled_from(TYPES[kind]))
        elif name == "instance":
            plausible[name] = draw(instances())
        elif name == "instances":
            plausible[name] = draw(st.lists(instances(), min_size=1, max_size=3))
        else:
            plausible[name] = draw(PLAUSIBLE[name])
    extra = ("requestId", "headers", "module", "noSuchField")
    return kind, draw(broken((*FIELDS[kind], *extra), plausible))


def guarded(node: NodeProcess) -> dict[str, Any]:
    return {k: v for k, v in stored(node).items() if GUARD_SERVICE in k or PERSISTED in k}


def test_fuzzed_naming_bodies_never_fail_the_server(node: NodeProcess, guard: GrpcClient):
    """Fuzzed requests may change what they target (a valid register is served); never the
    guard services, which they do not name."""
    assert_unharmed(node, None)
    before = guarded(node)
    client = GrpcClient(grpc_port(node), {"accessToken": node.token()})
    try:
        client.connect()

        @settings(
            max_examples=GRPC_FUZZ_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def one(request: tuple[str, dict[str, Any]]) -> None:
            kind, body = request
            answer = client.request(kind, **body)
            assert answer.type in (RESPONSE[kind], "ErrorResponse"), answer
            assert answer.body["errorCode"] != SERVER_ERROR, (kind, body, answer)
            if answer.body["resultCode"] != 200:
                assert answer.body["message"], answer

        one()
        assert _ready(client)
    finally:
        client.close()
    assert_unharmed(node, None)
    assert guarded(node) == before
