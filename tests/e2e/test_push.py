"""UDP push (spec §C.8, scenario 17) against a real node.

The test plays the Node SDK's ``push_receiver.js``: it binds a UDP socket on loopback, lists with
the SDK's User-Agent and ``udpPort``, then gunzips and parses what arrives and acks it.
"""

from __future__ import annotations

import gzip
import json
import socket
import time

from testkit.harness import NodeProcess, wait_for

NODE_UA = {"User-Agent": "Nacos-Java-Client:v1.0.0", "Client-Version": "Nacos-Java-Client:v1.0.0"}


def receive(sock: socket.socket, deadline_s: float) -> tuple[dict, tuple[str, int], bool]:
    sock.settimeout(deadline_s)
    data, sender = sock.recvfrom(65536)
    gzipped = data[:2] == b"\x1f\x8b"
    packet = json.loads(gzip.decompress(data) if gzipped else data)
    return packet, sender, gzipped


def subscribe(node: NodeProcess, service: str, port: int, clusters: str = "") -> dict:
    return node.api(
        "GET",
        "/instance/list",
        {
            "serviceName": f"DEFAULT_GROUP@@{service}",
            "udpPort": port,
            "clientIP": "203.0.113.9",
            "clusters": clusters,
            "healthyOnly": "false",
        },
        headers=NODE_UA,
    ).json()


def test_a_node_client_is_pushed_the_new_list_and_its_ack_is_counted(node: NodeProcess, svc: str):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    try:
        node.api("POST", "/instance", {"serviceName": svc, "ip": "10.7.0.1", "port": 80})
        listed = subscribe(node, svc, receiver.getsockname()[1])
        assert listed["cacheMillis"] == 10000  # subscribed callers poll slower
        before = node.request("GET", "/nacos/v1/ns/operator/push/state").json()

        started = time.monotonic()
        node.api("POST", "/instance", {"serviceName": svc, "ip": "10.7.0.2", "port": 80})
        packet, sender, _ = receive(receiver, 5)
        latency = time.monotonic() - started

        assert packet["type"] == "dom" and isinstance(packet["data"], str)
        data = json.loads(packet["data"])
        assert data["name"] == f"DEFAULT_GROUP@@{svc}" and data["cacheMillis"] == 10000
        assert sorted(h["ip"] for h in data["hosts"]) == ["10.7.0.1", "10.7.0.2"]
        assert data["hosts"][0]["serviceName"] == f"DEFAULT_GROUP@@{svc}"
        assert latency < 3.0
        ack = {"type": "push-ack", "lastRefTime": packet["lastRefTime"], "data": ""}
        receiver.sendto(json.dumps(ack).encode(), sender)

        def acked() -> bool:
            state = node.request("GET", "/nacos/v1/ns/operator/push/state").json()
            return state["succeed"] > before["succeed"]

        wait_for(acked, 5, message="push-ack counted")
        subscribers = node.api("GET", "/service/subscribers", {"serviceName": svc}).json()
        # The packet went to the HTTP peer (loopback), not to the claimed clientIP.
        assert subscribers["count"] == 1
        assert subscribers["subscribers"][0]["ip"] == "127.0.0.1"
    finally:
        receiver.close()


def test_large_pushes_arrive_gzipped(node: NodeProcess, svc: str):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    try:
        for i in range(20):
            node.api("POST", "/instance", {"serviceName": svc, "ip": f"10.8.0.{i}", "port": 80})
        subscribe(node, svc, receiver.getsockname()[1])
        node.api("POST", "/instance", {"serviceName": svc, "ip": "10.8.1.1", "port": 80})
        packet, _, gzipped = receive(receiver, 5)
        assert gzipped
        assert len(json.loads(packet["data"])["hosts"]) == 21
    finally:
        receiver.close()


def test_python_clients_are_never_subscribed(node: NodeProcess, svc: str):
    node.api("POST", "/instance", {"serviceName": svc, "ip": "10.9.0.1", "port": 80})
    listed = node.api(
        "GET",
        "/instance/list",
        {"serviceName": svc, "udpPort": 40000},
        headers={"User-Agent": "Nacos-Python-Client:v0.1.16"},
    ).json()
    assert listed["cacheMillis"] == 3000
    assert node.api("GET", "/service/subscribers", {"serviceName": svc}).json()["count"] == 0
