"""The HTTP edge over an in-memory runtime (no sockets): shapes, gate, routing."""

from __future__ import annotations

import urllib.parse

from django.test import Client

from node.runtime import NodeRuntime


def test_register_then_list_through_the_views(node: NodeRuntime, client: Client):
    created = client.post("/nacos/v1/ns/instance?serviceName=s&ip=1.1.1.1&port=80&enable=True")
    assert (created.status_code, created.content) == (200, b"ok")
    listed = client.get("/nacos/v1/ns/instance/list?serviceName=s").json()
    assert [h["ip"] for h in listed["hosts"]] == ["1.1.1.1"]


def test_errors_are_text_in_the_nacos_shape(node: NodeRuntime, client: Client):
    response = client.post("/nacos/v1/ns/instance?serviceName=s&port=80")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"caused: Param 'ip' is required.;"


def test_a_method_the_path_lacks_is_501(node: NodeRuntime, client: Client):
    response = client.delete("/nacos/v1/ns/instance/list?serviceName=s")
    assert response.status_code == 501
    assert response.json()["message"] == "no such api:DELETE:/nacos/v1/ns/instance/list"


def test_a_starting_node_answers_503_but_reports_its_status(node: NodeRuntime, client: Client):
    node._ready.clear()
    response = client.get("/nacos/v1/ns/instance/list?serviceName=s")
    assert response.status_code == 503
    assert response.content == b"server is STARTINGnow, please try again later!"
    assert client.get("/nacos/v1/ns/operator/metrics").json()["status"] == "STARTING"


def test_limited_url_map_answers_the_configured_status(node: NodeRuntime, client: Client):
    client.put("/nacos/v1/ns/operator/switches?entry=limitedUrlMap&value=/nacos/v1/ns/catalog:429")
    assert client.get("/nacos/v1/ns/catalog/services?pageNo=1&pageSize=1").status_code == 429
    client.put("/nacos/v1/ns/operator/switches?entry=limitedUrlMap&value=/nacos/v1/ns/operator:503")
    assert client.get("/nacos/v1/ns/operator/switches").status_code == 200
    client.put("/nacos/v1/ns/operator/switches?entry=limitedUrlMap&value=null")
    assert client.get("/nacos/v1/ns/catalog/services?pageNo=1&pageSize=1").status_code == 200


def test_python_booleans_and_cluster_param_quirks(node: NodeRuntime, client: Client):
    client.post(
        "/nacos/v1/ns/instance?serviceName=s&ip=1.1.1.2&port=80&healthy=False"
        "&ephemeral=True&clusterName=None"
    )
    listed = client.get("/nacos/v1/ns/instance/list?serviceName=s&healthyOnly=False").json()
    assert [(h["clusterName"], h["ephemeral"]) for h in listed["hosts"]] == [("None", True)]


def test_is_check_returns_an_empty_object(node: NodeRuntime, client: Client):
    assert client.get("/nacos/v1/ns/instance/list?serviceName=s&isCheck=true").json() == {}


def test_a_failing_registry_listener_does_not_break_writes(node: NodeRuntime, client: Client):
    node.notifier.add_listener("broken", lambda d: 1 / 0)
    response = client.post("/nacos/v1/ns/instance?serviceName=s&ip=1.1.1.3&port=80")
    assert response.status_code == 200
    assert client.get("/nacos/v1/ns/instance/list?serviceName=s").json()["hosts"]
    assert node.notifier.stats.listeners[-1].failures >= 1


def test_login_with_auth_off_answers_valid_json_for_any_username(node: NodeRuntime, client: Client):
    plain = client.post("/nacos/v1/auth/users/login?username=nacos&password=x")
    assert plain.content == (
        b'{"accessToken":"","tokenTtl":18000,"globalAdmin":true,"username":"nacos"}'
    )
    odd = 'a"b\\c'
    query = urllib.parse.urlencode({"username": odd, "password": "x"})
    quoted = client.post(f"/nacos/v1/auth/users/login?{query}")
    assert quoted.status_code == 200 and quoted.json()["username"] == odd


def test_push_state_reset_is_one_step_while_the_push_threads_count(
    node: NodeRuntime, client: Client
):
    """Resetting zeroes what it reported, no more and no less, while counting goes on."""
    import threading

    stats = node.push.stats
    stop = threading.Event()
    counted = [0]

    def count() -> None:
        while not stop.is_set():
            stats.sent()
            stats.acked()
            counted[0] += 1

    thread = threading.Thread(target=count)
    thread.start()
    total = succeed = 0
    try:
        for _ in range(20):
            body = client.get("/nacos/v1/ns/operator/push/state?reset=true").json()
            assert body["reset"] is True
            total += body["total"]
            succeed += body["succeed"]
    finally:
        stop.set()
        thread.join(timeout=5)
    last = stats.read(reset=True)
    # No count lost to a racing reset (with `+=` on attributes, some were).
    assert (total + last.total, succeed + last.succeed) == (counted[0], counted[0])
