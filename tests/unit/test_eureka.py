"""The Eureka REST facade over the in-memory runtime (issue #14): every route in XML and JSON,
gzip, the hash and the delta, Eureka's status rules, and bad input (4xx, nothing stored)."""

from __future__ import annotations

import gzip
import json
from typing import Any
from xml.etree import ElementTree

import pytest
from django.test import Client

from facades.eureka.mapping import Key, Status, apps_hashcode, effective_status
from facades.eureka.views import MAX_BODY
from naming.domain import ServiceName
from node.runtime import NodeRuntime

APP = "MY-APP"
IID = "10.0.0.5:my-app:9090"
SVC = ServiceName("public", f"DEFAULT_GROUP@@{APP}")


def body(**changes: Any) -> dict[str, Any]:
    """py-eureka-client's registration body (``shared/nacos-v1-api.md`` §E.3)."""
    instance: dict[str, Any] = {
        "instanceId": IID,
        "hostName": "host-5",
        "app": APP,
        "ipAddr": "10.0.0.5",
        "status": "UP",
        "overriddenstatus": "UNKNOWN",
        "port": {"$": 9090, "@enabled": "true"},
        "securePort": {"$": 9443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"management.port": "9090"},
        "homePageUrl": "http://host-5:9090/",
        "vipAddress": "my-app",
        "secureVipAddress": "my-app-s",
        "lastUpdatedTimestamp": "1700000000000",
        "lastDirtyTimestamp": "1700000000000",
        "isCoordinatingDiscoveryServer": "false",
    }
    for key, value in changes.items():
        if value is None:
            instance.pop(key, None)
        else:
            instance[key] = value
    return {"instance": instance}


XML_BODY = f"""<instance><instanceId>x1</instanceId><hostName>h1</hostName><app>{APP}</app>
<ipAddr>10.0.0.6</ipAddr><status>UP</status><port enabled="true">8080</port>
<securePort enabled="false">443</securePort><countryId>1</countryId>
<dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">
<name>MyOwn</name></dataCenterInfo><leaseInfo><durationInSecs>20</durationInSecs></leaseInfo>
<metadata><zone>zone-a</zone></metadata><vipAddress>my-app</vipAddress></instance>"""


@pytest.fixture
def eureka(node: NodeRuntime, client: Client) -> Client:
    return client


def register(client: Client, path_app: str = APP, base: str = "/eureka/", **changes: Any) -> Any:
    return client.post(
        f"{base}apps/{path_app}", json.dumps(body(**changes)), content_type="application/json"
    )


def xml(answer: Any) -> ElementTree.Element:
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("application/xml")
    return ElementTree.fromstring(answer.content)


def stored(node: NodeRuntime) -> list[Any]:
    view = node.registry.get(SVC)
    return [] if view is None else list(view.instances())


# -- register and read --------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["/eureka/", "/eureka/v2/"])
def test_register_then_read_in_xml_and_json(eureka: Client, node: NodeRuntime, base: str) -> None:
    assert register(eureka, base=base).status_code == 204
    (inst,) = stored(node)
    assert (inst.ip, inst.port, inst.native_id, inst.cluster) == ("10.0.0.5", 9090, IID, "DEFAULT")
    assert inst.metadata["preserved.source"] == "eureka"
    assert inst.metadata["preserved.heart.beat.interval"] == "30000"
    assert inst.metadata["preserved.heart.beat.timeout"] == "90000"
    assert inst.metadata["preserved.ip.delete.timeout"] == "180000"
    assert inst.metadata[Key.HOST_NAME] == "host-5"

    for path in (f"{base}apps", f"{base}apps/"):
        root = xml(eureka.get(path))
        assert root.tag == "applications"
        assert root.findtext("apps__hashcode") == "UP_1_"
        assert int(root.findtext("versions__delta") or "x") > 0
        app = root.find("application")
        assert app is not None and app.findtext("name") == APP
        one = app.find("instance")
        assert one is not None
        assert one.findtext("instanceId") == IID
        assert one.findtext("hostName") == "host-5"
        assert one.findtext("status") == "UP"
        port = one.find("port")
        assert port is not None and port.text == "9090" and port.get("enabled") == "true"
        assert one.find("dataCenterInfo").get("class").endswith("DefaultDataCenterInfo")
        assert one.findtext("metadata/management.port") == "9090"
        assert one.findtext("leaseInfo/durationInSecs") == "90"
        assert one.findtext("lastDirtyTimestamp") == "1700000000000"

    answer = eureka.get(f"{base}apps", HTTP_ACCEPT="application/json")
    assert answer["Content-Type"].startswith("application/json")
    apps = answer.json()["applications"]
    assert apps["apps__hashcode"] == "UP_1_"
    assert isinstance(apps["application"], list)
    (instance,) = apps["application"][0]["instance"]
    assert instance["port"] == {"$": 9090, "@enabled": "true"}
    assert instance["securePort"] == {"$": 9443, "@enabled": "false"}
    assert instance["countryId"] == 1 and instance["lastDirtyTimestamp"] == "1700000000000"
    assert instance["metadata"] == {"management.port": "9090"}
    assert instance["vipAddress"] == "my-app" and instance["secureVipAddress"] == "my-app-s"


def test_register_xml_body_and_zone_cluster(eureka: Client, node: NodeRuntime) -> None:
    answer = eureka.post(f"/eureka/apps/{APP}/", XML_BODY, content_type="application/xml")
    assert answer.status_code == 204, answer.content
    (inst,) = stored(node)
    assert (inst.ip, inst.port, inst.cluster, inst.native_id) == ("10.0.0.6", 8080, "zone-a", "x1")
    assert inst.metadata["preserved.heart.beat.timeout"] == "20000"
    assert inst.metadata["preserved.ip.delete.timeout"] == "40000"
    doc = eureka.get(f"/eureka/apps/{APP}/x1", HTTP_ACCEPT="application/json").json()
    assert doc["instance"]["metadata"] == {"zone": "zone-a"}
    assert doc["instance"]["leaseInfo"]["renewalIntervalInSecs"] == 30


def test_lenient_json_input(eureka: Client, node: NodeRuntime) -> None:
    """eureka-js-client: no instanceId (the id is the host name), booleans, no leaseInfo."""
    answer = register(
        eureka,
        "jsdemo",
        app="jsdemo",
        instanceId=None,
        port={"$": "9998", "@enabled": True},
        leaseInfo=None,
        metadata={"@class": "java.util.Collections$EmptyMap"},
    )
    assert answer.status_code == 204, answer.content
    view = node.registry.get(ServiceName("public", "DEFAULT_GROUP@@JSDEMO"))
    assert view is not None
    (inst,) = view.instances()
    assert (inst.native_id, inst.port) == ("host-5", 9998)
    doc = eureka.get("/eureka/apps/jsdemo/host-5", HTTP_ACCEPT="application/json").json()
    assert doc["instance"]["metadata"] == {"@class": "java.util.Collections$EmptyMap"}
    assert doc["instance"]["app"] == "JSDEMO"
    one = xml(eureka.get("/eureka/apps/JSDEMO/host-5"))
    assert one.find("metadata").get("class") == "java.util.Collections$EmptyMap"


def test_reads_of_one_app_instance_and_vips(eureka: Client) -> None:
    register(eureka)
    app = xml(eureka.get(f"/eureka/apps/{APP.lower()}"))
    assert app.tag == "application" and app.findtext("name") == APP
    assert xml(eureka.get(f"/eureka/apps/{APP}/{IID}")).tag == "instance"
    assert xml(eureka.get(f"/eureka/v2/instances/{IID}/")).findtext("app") == APP
    assert xml(eureka.get("/eureka/vips/my-app")).findtext("application/name") == APP
    assert xml(eureka.get("/eureka/svips/my-app-s")).findtext("application/name") == APP
    for missing in (
        "/eureka/apps/NOPE",
        f"/eureka/apps/{APP}/nope",
        "/eureka/instances/nope",
        "/eureka/vips/nope",
        "/eureka/svips/my-app",
    ):
        assert eureka.get(missing).status_code == 404, missing


def test_gzip(eureka: Client) -> None:
    register(eureka)
    for path in ("/eureka/apps/", "/eureka/apps/delta"):
        answer = eureka.get(path, HTTP_ACCEPT_ENCODING="gzip, deflate")
        assert answer["Content-Encoding"] == "gzip"
        assert answer["Content-Type"].startswith("application/xml")
        assert ElementTree.fromstring(gzip.decompress(answer.content)).tag == "applications"
    assert not eureka.get("/eureka/apps/").has_header("Content-Encoding")


# -- renew, cancel, status ------------------------------------------------------------------------


def test_renew_and_cancel(eureka: Client, node: NodeRuntime) -> None:
    assert eureka.put(f"/eureka/apps/{APP}/{IID}").status_code == 404  # unknown: re-register
    register(eureka)
    assert eureka.put(f"/eureka/apps/{APP}/{IID}?status=UP").status_code == 200
    older = eureka.put(f"/eureka/apps/{APP}/{IID}?lastDirtyTimestamp=1600000000000")
    assert older.status_code == 200
    newer = eureka.put(f"/eureka/apps/{APP}/{IID}?lastDirtyTimestamp=1800000000000")
    assert newer.status_code == 404
    assert eureka.delete(f"/eureka/apps/{APP}/{IID}/").status_code == 200
    assert stored(node) == []
    assert eureka.delete(f"/eureka/apps/{APP}/{IID}").status_code == 404


def test_renew_revives_a_lapsed_lease_but_not_a_down_instance(
    eureka: Client, node: NodeRuntime
) -> None:
    register(eureka)
    (inst,) = stored(node)
    node.operations.renew_reported(SVC, inst.key, False)  # as the expiry would: unhealthy
    assert not stored(node)[0].healthy
    assert eureka.put(f"/eureka/apps/{APP}/{IID}").status_code == 200
    assert stored(node)[0].healthy
    register(eureka, status="DOWN")
    assert not stored(node)[0].healthy
    assert eureka.put(f"/eureka/apps/{APP}/{IID}").status_code == 200
    assert not stored(node)[0].healthy
    assert xml(eureka.get("/eureka/apps")).findtext("apps__hashcode") == "DOWN_1_"


def test_status_override_hides_and_survives_re_registration(
    eureka: Client, node: NodeRuntime
) -> None:
    register(eureka)
    assert eureka.put(f"/eureka/apps/{APP}/{IID}/status").status_code == 400  # no value
    answer = eureka.put(f"/eureka/apps/{APP}/{IID}/status?value=OUT_OF_SERVICE")
    assert answer.status_code == 200
    (inst,) = stored(node)
    assert not inst.enabled and inst.metadata[Key.OVERRIDDEN] == "OUT_OF_SERVICE"
    listed = eureka.get(f"/nacos/v1/ns/instance/list?serviceName={APP}").json()
    assert listed["hosts"] == []  # hidden from discovery, as enabled=false is
    one = xml(eureka.get(f"/eureka/apps/{APP}/{IID}"))
    assert one.findtext("status") == "OUT_OF_SERVICE"
    assert one.findtext("overriddenStatus") == "OUT_OF_SERVICE"
    register(eureka)  # the client says UP again: the override wins
    assert stored(node)[0].metadata[Key.STATUS] == "OUT_OF_SERVICE"
    assert eureka.put(f"/eureka/apps/{APP}/{IID}").status_code == 200

    assert eureka.delete(f"/eureka/apps/{APP}/{IID}/status").status_code == 200
    (inst,) = stored(node)
    assert inst.enabled and inst.metadata[Key.STATUS] == "UNKNOWN"
    assert eureka.put(f"/eureka/apps/{APP}/{IID}").status_code == 404  # register again
    register(eureka)
    (inst,) = stored(node)
    assert inst.metadata[Key.STATUS] == "UP" and inst.healthy and inst.enabled
    assert eureka.put(f"/eureka/apps/{APP}/nope/status?value=UP").status_code == 404


def test_status_rules() -> None:
    up, oos, down, unknown = Status.UP, Status.OUT_OF_SERVICE, Status.DOWN, Status.UNKNOWN
    assert effective_status(down, oos, up) is down  # a reported DOWN always wins
    assert effective_status(up, oos, up) is oos  # then the override
    assert effective_status(up, unknown, oos) is oos  # then the lease's UP/OUT_OF_SERVICE
    assert effective_status(up, unknown, down) is up
    assert effective_status(up, unknown, None) is up
    assert Status.of("bogus") is unknown and Status.of("up") is up
    assert apps_hashcode([up, down, up]) == "DOWN_1_UP_2_"
    assert apps_hashcode([]) == ""


def test_metadata_update(eureka: Client, node: NodeRuntime) -> None:
    register(eureka)
    answer = eureka.put(f"/eureka/apps/{APP}/{IID}/metadata?a=1&eureka.status=DOWN")
    assert answer.status_code == 200
    (inst,) = stored(node)
    assert inst.metadata["a"] == "1" and inst.metadata[Key.STATUS] == "UP"
    assert eureka.put(f"/eureka/apps/{APP}/nope/metadata?a=1").status_code == 404


# -- delta ----------------------------------------------------------------------------------------


def test_delta_from_the_change_feed(eureka: Client, node: NodeRuntime) -> None:
    register(eureka)
    register(eureka, "OTHER", instanceId="o1", app="OTHER")
    node.notifier.wait_processed(node.notifier.notify_barrier(), 5.0)
    doc = eureka.get("/eureka/apps/delta", HTTP_ACCEPT="application/json").json()
    apps = doc["applications"]
    assert apps["apps__hashcode"] == "UP_2_"
    actions = {a["name"]: [i["actionType"] for i in a["instance"]] for a in apps["application"]}
    assert actions == {APP: ["ADDED"], "OTHER": ["ADDED"]}
    version = int(apps["versions__delta"])

    eureka.delete("/eureka/apps/OTHER/o1")
    node.notifier.wait_processed(node.notifier.notify_barrier(), 5.0)
    root = xml(eureka.get("/eureka/apps/delta"))
    assert root.findtext("apps__hashcode") == "UP_1_"  # the full registry's hash
    assert int(root.findtext("versions__delta") or "0") > version
    other = [a for a in root.findall("application") if a.findtext("name") == "OTHER"]
    assert [i.findtext("actionType") for i in other[0].findall("instance")] == ["DELETED"]


# -- Nacos instances ------------------------------------------------------------------------------


def test_nacos_instances_are_shown(eureka: Client) -> None:
    for ip in ("10.1.0.1", "10.1.0.2"):
        added = eureka.post(f"/nacos/v1/ns/instance?serviceName=orders&ip={ip}&port=80")
        assert added.status_code == 200
    eureka.put("/nacos/v1/ns/instance?serviceName=orders&ip=10.1.0.2&port=80&enabled=false")
    eureka.post("/nacos/v1/ns/instance?serviceName=g&groupName=OTHER&ip=10.1.0.3&port=80")
    doc = eureka.get("/eureka/apps", HTTP_ACCEPT="application/json").json()["applications"]
    (app,) = doc["application"]
    assert app["name"] == "ORDERS"
    shown = {i["instanceId"]: i["status"] for i in app["instance"]}
    assert shown == {"10.1.0.1:80": "UP", "10.1.0.2:80": "OUT_OF_SERVICE"}
    assert doc["apps__hashcode"] == "OUT_OF_SERVICE_1_UP_1_"
    assert xml(eureka.get("/eureka/apps/orders/10.1.0.1:80")).findtext("vipAddress") == "orders"
    assert eureka.put("/eureka/apps/orders/10.1.0.1:80").status_code == 404  # not a Eureka lease


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"instanceId": None, "hostName": None}, "Missing instanceId"),
        ({"hostName": None}, "Missing hostname"),
        ({"ipAddr": None}, "Missing ip address"),
        ({"app": None}, "Missing appName"),
        ({"app": "OTHER"}, "Mismatched appName"),
        ({"dataCenterInfo": None}, "Missing dataCenterInfo"),
        ({"dataCenterInfo": {"@class": "x"}}, "Missing dataCenterInfo Name"),
        ({"port": {"$": "eighty"}}, "port must be a number"),
        ({"port": {"$": 70000}}, "port out of range"),
        ({"ipAddr": "not an ip"}, "ip format invalid"),
        ({"metadata": {f"k{i}": "v" for i in range(100)}}, "metadata has 100 entries"),
    ],
)
def test_bad_registrations_are_400(
    eureka: Client, node: NodeRuntime, changes: dict[str, Any], reason: str
) -> None:
    answer = register(eureka, **changes)
    assert answer.status_code == 400
    assert reason in answer.content.decode()
    assert stored(node) == []


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"instance": 3}', "application/json"),
        ("[]", "application/json"),
        ("<instance><app>x</instance>", "application/xml"),
        ("<applications/>", "application/xml"),
        ("", "application/xml"),
        (
            '<?xml version="1.0"?><!DOCTYPE i [<!ENTITY a "aaaaaaaaaa">]><instance>&a;</instance>',
            "application/xml",
        ),
        ("<\udcff>", "text/plain"),
    ],
)
def test_malformed_bodies_are_400(
    eureka: Client, node: NodeRuntime, payload: str, content_type: str
) -> None:
    data = payload.encode("utf-8", "surrogateescape")
    answer = eureka.post(f"/eureka/apps/{APP}", data, content_type=content_type)
    assert answer.status_code == 400, answer.content
    assert stored(node) == []


def test_oversized_body_is_413(eureka: Client, node: NodeRuntime) -> None:
    padded = body(metadata={"pad": "x" * MAX_BODY})
    answer = eureka.post(f"/eureka/apps/{APP}", json.dumps(padded), content_type="application/json")
    assert answer.status_code == 413
    assert stored(node) == []


def test_bad_app_name_and_methods(eureka: Client, node: NodeRuntime) -> None:
    answer = register(eureka, "a b", app="a b")
    assert answer.status_code == 400
    assert eureka.post("/eureka/apps").status_code == 405
    assert eureka.patch(f"/eureka/apps/{APP}/{IID}").status_code == 405
    assert eureka.get(f"/eureka/apps/{APP}/{IID}/status").status_code == 405
    assert eureka.get("/eureka/unknown").status_code == 404
    assert stored(node) == []


def test_peer_path_needs_a_signature(eureka: Client, node: NodeRuntime) -> None:
    answer = eureka.post(
        f"/nacos/v1/ns/distro/eureka/apps/{APP}",
        json.dumps(body()),
        content_type="application/json",
    )
    assert answer.status_code == 403
    assert stored(node) == []


def test_answers_are_counted_by_resource_and_status(eureka: Client, node: NodeRuntime) -> None:
    from facades.eureka import views

    before = views.stats()
    assert register(eureka).status_code == 204
    assert eureka.put(f"/eureka/apps/{APP}/no-such-id").status_code == 404
    after = views.stats()
    grew = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert len(grew) == 2 and all(v == 1 for v in grew.values()), grew
    assert any(k.endswith(" 204") for k in grew) and any(k.endswith(" 404") for k in grew)
    metrics = Client().get("/nacos/v1/ns/operator/metrics").json()
    assert metrics["eureka"] == after
