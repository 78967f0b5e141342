"""Spec §F scenarios against a real node, driven by the real nacos-sdk-python v1 client.

Numbers in the test names refer to ``nacos-v1-api.md`` §F. The slow timing scenarios (5, 6, 8,
13, 23) live in ``test_sdk_timing.py``.
"""

from __future__ import annotations

import json
import threading
import time

import nacos
import pytest
from nacos.exception import NacosException

from testkit.harness import NodeProcess, wait_for


def hosts(client: nacos.NacosClient, service: str, **kwargs: object) -> list[dict]:
    return client.list_naming_instance(service, **kwargs)["hosts"]


def test_f1_register_then_list_returns_the_instance_with_nacos_fields(node: NodeProcess, svc: str):
    client = node.client()
    assert (
        client.add_naming_instance(
            svc, "10.0.0.1", 8080, cluster_name="DEFAULT", metadata={"k": "v"}
        )
        is True
    )

    result = client.list_naming_instance(svc)

    assert result["name"] == f"DEFAULT_GROUP@@{svc}"
    assert result["dom"] == svc
    assert result["cacheMillis"] == 3000
    [host] = result["hosts"]
    assert host == {
        "ip": "10.0.0.1",
        "port": 8080,
        "valid": True,
        "healthy": True,
        "marked": False,
        "instanceId": f"10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@{svc}",
        "metadata": {"k": "v"},
        "enabled": True,
        "weight": 1.0,
        "clusterName": "DEFAULT",
        "serviceName": svc,
        "ephemeral": True,
    }


def test_f2_unknown_service_lists_empty_and_subscribe_does_not_raise(node: NodeProcess):
    client = node.client()
    assert client.list_naming_instance("nope-f2") == {
        "name": "DEFAULT_GROUP@@nope-f2",
        "clusters": "",
        "cacheMillis": 3000,
        "hosts": [],
    }
    client.subscribe([], 1, service_name="nope-f2")
    client.stop_subscribe()


def test_f3_groups_and_namespaces_isolate_instances(node: NodeProcess, svc: str):
    client = node.client()
    other_ns = node.client(namespace="ns-a")
    assert client.add_naming_instance(svc, "10.0.0.3", 80, cluster_name="DEFAULT", group_name="G1")
    assert other_ns.add_naming_instance(svc, "10.0.0.4", 80, cluster_name="DEFAULT")
    assert client.add_naming_instance(svc, "10.0.0.5", 80, cluster_name="DEFAULT")

    assert [h["ip"] for h in hosts(client, svc, group_name="G1")] == ["10.0.0.3"]
    assert [h["ip"] for h in hosts(client, svc)] == ["10.0.0.5"]
    assert [h["ip"] for h in hosts(other_ns, svc)] == ["10.0.0.4"]
    found = client.get_naming_instance(svc, "10.0.0.5", 80, cluster_name="DEFAULT")
    assert found["ip"] == "10.0.0.5" and found["service"] == f"DEFAULT_GROUP@@{svc}"


def test_f4_deregister_removes_and_is_idempotent(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT")
    assert client.remove_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT") is True
    assert hosts(client, svc) == []
    assert client.remove_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT") is True
    assert client.remove_naming_instance("never-" + svc, "10.0.0.1", 1, cluster_name="DEFAULT")


def test_f5_beat_answers_with_interval_and_light_beat(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT")
    answer = client.send_heartbeat(svc, "10.0.0.1", 8080, cluster_name="DEFAULT")
    assert answer == {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}


def test_f7_beat_reregisters_a_missing_instance_from_its_body(node: NodeProcess, svc: str):
    client = node.client()
    answer = client.send_heartbeat(
        svc, "10.0.0.2", 9000, cluster_name="DEFAULT", weight=2.0, metadata={"a": "b"}
    )
    assert answer["code"] == 10200
    [host] = hosts(client, svc)
    assert (host["ip"], host["port"], host["weight"], host["metadata"]) == (
        "10.0.0.2",
        9000,
        2.0,
        {"a": "b"},
    )


def test_f7_light_beat_for_a_missing_instance_answers_20404(node: NodeProcess, svc: str):
    result = node.api(
        "PUT",
        "/instance/beat",
        {"serviceName": svc, "ip": "10.9.9.9", "port": 1, "clusterName": "DEFAULT"},
    )
    assert result.status == 200
    assert result.json() == {"clientBeatInterval": 5000, "code": 20404}


def test_f8_beat_interval_follows_preserved_metadata(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(
        svc,
        "10.0.0.8",
        80,
        cluster_name="DEFAULT",
        metadata={"preserved.heart.beat.interval": "1000"},
    )
    answer = client.send_heartbeat(
        svc,
        "10.0.0.8",
        80,
        cluster_name="DEFAULT",
        metadata={"preserved.heart.beat.interval": "1000"},
    )
    assert answer["clientBeatInterval"] == 1000


def test_f9_tiny_weight_is_clamped_and_huge_weight_rejected(node: NodeProcess, svc: str):
    client = node.client()
    assert client.add_naming_instance(svc, "10.0.0.1", 1, cluster_name="DEFAULT", weight=0.001)
    assert client.add_naming_instance(svc, "10.0.0.2", 2, cluster_name="DEFAULT", weight=0)
    with pytest.raises(NacosException):
        client.add_naming_instance(svc, "10.0.0.3", 3, cluster_name="DEFAULT", weight=20000)
    weights = {h["ip"]: h["weight"] for h in hosts(client, svc)}
    assert weights == {"10.0.0.1": 0.01, "10.0.0.2": 0.0}


def test_f10_healthy_only_filters_unhealthy(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.1.1", 80, cluster_name="DEFAULT")
    client.add_naming_instance(svc, "10.0.1.2", 80, cluster_name="DEFAULT", healthy=False)
    assert [h["ip"] for h in hosts(client, svc, healthy_only=True)] == ["10.0.1.1"]
    both = {h["ip"]: h["healthy"] for h in hosts(client, svc, healthy_only=False)}
    assert both == {"10.0.1.1": True, "10.0.1.2": False}


def test_f10_all_unhealthy_trips_the_default_protect_threshold(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.1.1", 80, cluster_name="DEFAULT", healthy=False)
    client.add_naming_instance(svc, "10.0.1.2", 80, cluster_name="DEFAULT", healthy=False)
    listed = hosts(client, svc, healthy_only=True)
    assert sorted(h["ip"] for h in listed) == ["10.0.1.1", "10.0.1.2"]
    assert all(h["healthy"] and h["valid"] for h in listed)


def test_f10_protect_threshold_from_put_service(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.1.1", 80, cluster_name="DEFAULT")
    client.add_naming_instance(svc, "10.0.1.2", 80, cluster_name="DEFAULT", healthy=False)
    put = node.api("PUT", "/service", {"serviceName": svc, "protectThreshold": "0.6"})
    assert (put.status, put.text) == (200, "ok")
    listed = hosts(client, svc, healthy_only=True)
    assert len(listed) == 2 and all(h["healthy"] for h in listed)


def test_f11_clusters_filter_and_echo(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.2.1", 80, cluster_name="c1")
    client.add_naming_instance(svc, "10.0.2.2", 80, cluster_name="c2")
    result = client.list_naming_instance(svc, clusters="c1")
    assert result["clusters"] == "c1"
    assert [(h["ip"], h["clusterName"]) for h in result["hosts"]] == [("10.0.2.1", "c1")]


def test_f12_modify_replaces_weight_and_resets_metadata(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT", metadata={"k": "v"})
    assert (
        client.modify_naming_instance(svc, "10.0.0.1", 8080, cluster_name="DEFAULT", weight=3.0)
        is True
    )
    [host] = hosts(client, svc)
    assert (host["weight"], host["metadata"]) == (3.0, {})


def test_f12_modify_of_a_missing_instance_creates_it(node: NodeProcess, svc: str):
    client = node.client()
    assert client.modify_naming_instance(svc, "10.0.0.7", 7070, cluster_name="DEFAULT", weight=2.0)
    assert [(h["ip"], h["weight"]) for h in hosts(client, svc)] == [("10.0.0.7", 2.0)]


def test_f14_subscribe_reports_added_modified_deleted_without_spurious_events(
    node: NodeProcess, svc: str
):
    client = node.client()
    client.add_naming_instance(svc, "10.0.3.1", 80, cluster_name="DEFAULT")
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(event: str, slc: object) -> None:
        with lock:
            events.append((event, slc.instance["ip"]))  # type: ignore[attr-defined]

    client.subscribe([nacos.listener.SubscribeListener(record, "rec")], 1, service_name=svc)
    try:
        client.add_naming_instance(svc, "10.0.3.2", 80, cluster_name="DEFAULT")
        wait_for(lambda: ("ADDED", "10.0.3.2") in events, 10, message="ADDED")
        client.modify_naming_instance(svc, "10.0.3.2", 80, cluster_name="DEFAULT", weight=5.0)
        wait_for(lambda: ("MODIFIED", "10.0.3.2") in events, 10, message="MODIFIED")
        client.remove_naming_instance(svc, "10.0.3.2", 80, cluster_name="DEFAULT")
        wait_for(lambda: ("DELETED", "10.0.3.2") in events, 10, message="DELETED")
        time.sleep(3)  # three more polls with nothing changing
    finally:
        client.stop_subscribe()
    assert events == [("ADDED", "10.0.3.2"), ("MODIFIED", "10.0.3.2"), ("DELETED", "10.0.3.2")]


def test_f15_wrong_password_fails_the_client_constructor(node: NodeProcess):
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises a bare Exception / NacosException
        nacos.NacosClient(node.address, username="nacos", password="wrong")


def test_f15_call_without_credentials_is_403_insufficient_privilege(node: NodeProcess, svc: str):
    anonymous = nacos.NacosClient(node.address)
    with pytest.raises(NacosException, match="Insufficient privilege"):
        anonymous.add_naming_instance(svc, "10.0.0.1", 80, cluster_name="DEFAULT")
    with pytest.raises(NacosException, match="Insufficient privilege"):
        anonymous.list_naming_instance(svc)


def test_f15_username_and_password_params_work_per_request(node: NodeProcess, svc: str):
    """What the Node SDK does: credentials as parameters on every call, no login."""
    creds = {"username": "nacos", "password": node.admin_password}
    result = node.request(
        "POST", "/nacos/v1/ns/instance", {**creds, "serviceName": svc, "ip": "10.0.0.1", "port": 80}
    )
    assert (result.status, result.text) == (200, "ok")
    bad = node.request(
        "GET",
        "/nacos/v1/ns/instance/list",
        {"username": "nacos", "password": "nope", "serviceName": svc},
    )
    assert (bad.status, bad.text) == (403, "unknown user!")


def test_f15_login_answers_token_ttl_and_admin_flag(node: NodeProcess):
    result = node.request(
        "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": node.admin_password}
    )
    body = result.json()
    assert body["tokenTtl"] == 18000 and body["globalAdmin"] is True
    assert body["username"] == "nacos"
    assert result.headers["Authorization"] == f"Bearer {body['accessToken']}"
    bearer = node.request(
        "GET",
        "/nacos/v1/ns/service/list",
        {"pageNo": 1, "pageSize": 5},
        headers={"Authorization": f"Bearer {body['accessToken']}"},
    )
    assert bearer.status == 200


def test_f15_forged_and_expired_tokens_are_refused(node: NodeProcess):
    forged = node.request(
        "GET",
        "/nacos/v1/ns/service/list",
        {"pageNo": 1, "pageSize": 5, "accessToken": "eyJhbGciOiJIUzI1NiJ9.e30.x"},
    )
    assert (forged.status, forged.text) == (403, "token invalid!")


def test_f19_metrics_report_up(node: NodeProcess):
    result = node.request("GET", "/nacos/v1/ns/operator/metrics")
    assert result.status == 200 and result.json()["status"] == "UP"


def test_f20_service_crud_and_list(node: NodeProcess, svc: str):
    created = node.api(
        "POST",
        "/service",
        {"serviceName": svc, "protectThreshold": "0.3", "metadata": '{"team":"a"}'},
    )
    assert (created.status, created.text) == (200, "ok")
    got = node.api("GET", "/service", {"serviceName": svc}).json()
    assert (got["name"], got["groupName"], got["protectThreshold"], got["metadata"]) == (
        svc,
        "DEFAULT_GROUP",
        0.3,
        {"team": "a"},
    )
    again = node.api("POST", "/service", {"serviceName": svc})
    assert again.status == 400 and "already exists" in again.text

    listed = node.api("GET", "/service/list", {"pageNo": 1, "pageSize": 10000}).json()
    assert svc in listed["doms"] and listed["doms"] == sorted(listed["doms"])
    assert listed["count"] == len(listed["doms"])

    deleted = node.api("DELETE", "/service", {"serviceName": svc})
    assert (deleted.status, deleted.text) == (200, "ok")
    assert node.api("GET", "/service", {"serviceName": svc}).status == 404


def test_f20_service_list_pages_are_one_based(node: NodeProcess, svc: str):
    group = "PAGING-" + svc[-6:]
    for i in range(5):
        node.api("POST", "/service", {"serviceName": f"p{i}", "groupName": group})
    first = node.api("GET", "/service/list", {"pageNo": 1, "pageSize": 2, "groupName": group})
    third = node.api("GET", "/service/list", {"pageNo": 3, "pageSize": 2, "groupName": group})
    assert first.json() == {"count": 5, "doms": ["p0", "p1"]}
    assert third.json() == {"count": 5, "doms": ["p4"]}


def test_f21_missing_ip_is_400_in_nacos_shape(node: NodeProcess, svc: str):
    result = node.api("POST", "/instance", {"serviceName": svc, "port": 80})
    assert (result.status, result.text) == (400, "caused: Param 'ip' is required.;")
    empty_group = node.api("POST", "/instance", {"serviceName": "@@x", "ip": "1.1.1.1", "port": 1})
    assert empty_group.status == 400


def test_f22_unknown_route_is_501(node: NodeProcess):
    result = node.request("GET", "/nacos/v1/ns/instances")
    assert result.status == 501
    assert result.json()["message"] == "no such api:GET:/nacos/v1/ns/instances"


def test_instance_list_answers_the_grouped_name_to_java_clients(node: NodeProcess, svc: str):
    node.api("POST", "/instance", {"serviceName": svc, "ip": "10.0.0.1", "port": 80})
    java = node.api(
        "GET",
        "/instance/list",
        {"serviceName": svc},
        headers={"User-Agent": "Nacos-Java-Client:v1.0.0"},
    ).json()
    assert java["dom"] == f"DEFAULT_GROUP@@{svc}"
    assert java["hosts"][0]["serviceName"] == f"DEFAULT_GROUP@@{svc}"


def test_persistent_instance_is_listed_and_checked_by_tcp(node: NodeProcess, svc: str):
    """A persistent instance on a closed loopback port goes unhealthy after 3 failed checks."""
    client = node.client()
    assert client.add_naming_instance(svc, "127.0.0.1", 1, cluster_name="DEFAULT", ephemeral=False)
    [host] = hosts(client, svc)
    assert host["ephemeral"] is False
    service = node.api("GET", "/service", {"serviceName": svc}).json()
    assert service["clusters"][0]["healthChecker"] == {"type": "TCP"}


def test_switches_round_trip_and_bad_values_are_400(node: NodeProcess):
    before = node.request("GET", "/nacos/v1/ns/operator/switches").json()
    assert before["clientBeatInterval"] == 5000 and before["name"].startswith("00-00")
    bad = node.api("PUT", "/operator/switches", {"entry": "pushCacheMillis", "value": "5"})
    assert bad.status == 400
    good = node.api("PUT", "/operator/switches", {"entry": "defaultCacheMillis", "value": "3000"})
    assert (good.status, good.text) == (200, "ok")


def test_catalog_views_show_services_and_instances(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.4.1", 80, cluster_name="DEFAULT")
    client.add_naming_instance(svc, "10.0.4.2", 80, cluster_name="DEFAULT", healthy=False)
    services = node.api(
        "GET", "/catalog/services", {"pageNo": 1, "pageSize": 100, "serviceNameParam": svc}
    ).json()
    assert services["count"] == 1
    [row] = services["serviceList"]
    assert (row["ipCount"], row["healthyInstanceCount"], row["clusterCount"]) == (2, 1, 1)
    instances = node.api(
        "GET",
        "/catalog/instances",
        {"serviceName": svc, "clusterName": "DEFAULT", "pageNo": 1, "pageSize": 10},
    ).json()
    assert instances["count"] == 2
    assert {i["instanceHeartBeatTimeOut"] for i in instances["list"]} == {15000}


def test_metadata_batch_merges_and_deletes_keys(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(svc, "10.0.5.1", 80, cluster_name="DEFAULT", metadata={"a": "1"})
    targets = json.dumps(
        [{"ip": "10.0.5.1", "port": 80, "clusterName": "DEFAULT", "ephemeral": True}]
    )
    put = node.api(
        "PUT",
        "/instance/metadata/batch",
        {"serviceName": svc, "instances": targets, "metadata": '{"b":"2"}'},
    )
    assert put.json() == {"updated": ["10.0.5.1:80:unknown:DEFAULT:ephemeral"]}
    assert hosts(client, svc)[0]["metadata"] == {"a": "1", "b": "2"}
    node.api(
        "DELETE",
        "/instance/metadata/batch",
        {"serviceName": svc, "instances": targets, "metadata": '{"a":""}'},
    )
    assert hosts(client, svc)[0]["metadata"] == {"b": "2"}


def test_patch_changes_only_given_fields(node: NodeProcess, svc: str):
    client = node.client()
    client.add_naming_instance(
        svc, "10.0.6.1", 80, cluster_name="DEFAULT", weight=4.0, metadata={"k": "v"}
    )
    patched = node.api(
        "PATCH", "/instance", {"serviceName": svc, "ip": "10.0.6.1", "port": 80, "enabled": "false"}
    )
    assert patched.text == "ok"
    listed = hosts(client, svc)
    assert listed == []  # disabled instances are hidden from instance/list
    detail = node.api(
        "GET",
        "/catalog/instances",
        {"serviceName": svc, "clusterName": "DEFAULT", "pageNo": 1, "pageSize": 10},
    ).json()["list"][0]
    assert (detail["weight"], detail["metadata"], detail["enabled"]) == (4.0, {"k": "v"}, False)
    missing = node.api("PATCH", "/instance", {"serviceName": svc, "ip": "10.0.6.9", "port": 80})
    assert missing.status == 404


def test_java_client_put_is_a_strict_update(node: NodeProcess, svc: str):
    java = {"User-Agent": "Nacos-Java-Client:v1.0.0"}
    missing = node.api(
        "PUT", "/instance", {"serviceName": svc, "ip": "10.0.7.1", "port": 80}, headers=java
    )
    assert missing.status == 404
    node.api("POST", "/instance", {"serviceName": svc, "ip": "10.0.7.1", "port": 80})
    absent = node.api(
        "PUT", "/instance", {"serviceName": svc, "ip": "10.0.7.2", "port": 80}, headers=java
    )
    assert absent.status == 400 and "instance not exist" in absent.text


def nacos_refuses(node: NodeProcess, user: str, password: str, svc: str) -> bool:
    listed = node.request(
        "GET",
        "/nacos/v1/ns/instance/list",
        {"serviceName": svc, "username": user, "password": password},
    )
    return listed.status == 403 and "authorization failed!" in listed.text


def test_admin_manages_users_and_a_new_user_can_use_the_sdk(node: NodeProcess, svc: str):
    user, password = "dev-" + svc[-6:], "correct-horse-1"
    created = node.request(
        "POST",
        "/nacos/v1/auth/users",
        {"username": user, "password": password, "accessToken": node.token()},
    )
    assert created.status == 200 and created.json()["message"] == "create user ok!"
    again = node.request(
        "POST",
        "/nacos/v1/auth/users",
        {"username": user, "password": password, "accessToken": node.token()},
    )
    assert again.status == 400 and "already exist" in again.text
    # A new user may do nothing until a role with a permission is bound to it.
    assert nacos_refuses(node, user, password, svc)
    for path, params in (
        ("/roles", {"role": "ROLE_DEV", "username": user}),
        ("/permissions", {"role": "ROLE_DEV", "resource": ":*:*", "action": "rw"}),
    ):
        granted = node.admin_call("POST", path, params)
        assert granted.status == 200, granted.text

    dev = nacos.NacosClient(node.address, username=user, password=password)
    assert dev.add_naming_instance(svc, "10.0.9.1", 80, cluster_name="DEFAULT")
    login = node.request("POST", "/nacos/v1/auth/login", {"username": user, "password": password})
    assert login.json()["globalAdmin"] is False
    token = login.json()["accessToken"]
    refused = node.request("GET", "/nacos/v1/auth/users", {"accessToken": token})
    assert refused.status == 403

    listed = node.request("GET", "/nacos/v1/auth/users", {"accessToken": node.token()}).json()
    assert {"username": user, "globalAdmin": False} in listed["pageItems"]
    assert "password" not in listed["pageItems"][0]

    deleted = node.request(
        "DELETE", "/nacos/v1/auth/users", {"username": user, "accessToken": node.token()}
    )
    assert deleted.status == 200
    gone = node.request(
        "GET",
        "/nacos/v1/ns/instance/list",
        {"serviceName": svc, "accessToken": login.json()["accessToken"]},
    )
    assert gone.status == 403


def test_user_admin_rejects_weak_passwords_and_bad_names(node: NodeProcess):
    for params in (
        {"username": "x y", "password": "long-enough-1"},
        {"username": "shortpw", "password": "123"},
        {"username": "nopw"},
    ):
        result = node.request(
            "POST", "/nacos/v1/auth/users", {**params, "accessToken": node.token()}
        )
        assert result.status == 400 and result.text.startswith("caused: "), result.text
    anonymous = node.request("GET", "/nacos/v1/auth/users")
    assert anonymous.status == 403
