"""Conditional fetch of a service's instances (issue #13, item 2): an entity tag from the
service's checksum, and 304 with no body while it is unchanged."""

from __future__ import annotations

from django.test import Client

from node.runtime import NodeRuntime

LIST = "/nacos/v1/ns/instance/list?serviceName=s"
CATALOG = "/nacos/v1/ns/catalog/instances?serviceName=s&clusterName=DEFAULT&pageNo=1&pageSize=10"


def register(client: Client, ip: str) -> None:
    created = client.post(f"/nacos/v1/ns/instance?serviceName=s&ip={ip}&port=80")
    assert created.status_code == 200


def test_an_unchanged_list_is_not_sent_again(node: NodeRuntime, client: Client):
    register(client, "1.1.1.1")
    first = client.get(LIST)
    tag = first["ETag"]
    assert first.status_code == 200 and tag.startswith('W/"')
    again = client.get(LIST, HTTP_IF_NONE_MATCH=tag)
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", tag)
    register(client, "1.1.1.2")
    changed = client.get(LIST, HTTP_IF_NONE_MATCH=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag
    assert sorted(h["ip"] for h in changed.json()["hosts"]) == ["1.1.1.1", "1.1.1.2"]


def test_the_tag_is_the_same_for_every_query_shape_and_any_listed_tag_matches(
    node: NodeRuntime, client: Client
):
    register(client, "1.1.1.1")
    tag = client.get(LIST)["ETag"]
    assert client.get(LIST + "&healthyOnly=true")["ETag"] == tag
    for header in (f'"x", {tag}', tag.removeprefix("W/"), "*"):
        assert client.get(LIST, HTTP_IF_NONE_MATCH=header).status_code == 304, header
    for header in ('"other"', "", 'W/"none"'):
        assert client.get(LIST, HTTP_IF_NONE_MATCH=header).status_code == 200, header


def test_a_missing_service_has_a_tag_of_its_own_until_it_exists(node: NodeRuntime, client: Client):
    empty = client.get(LIST)
    assert (empty.status_code, empty["ETag"]) == (200, 'W/"none"')
    assert client.get(LIST, HTTP_IF_NONE_MATCH='W/"none"').status_code == 304
    register(client, "1.1.1.1")
    assert client.get(LIST, HTTP_IF_NONE_MATCH='W/"none"').status_code == 200


def test_the_catalog_list_is_conditional_too(node: NodeRuntime, client: Client):
    register(client, "1.1.1.1")
    first = client.get(CATALOG)
    assert first.status_code == 200 and first.json()["count"] == 1
    assert client.get(CATALOG, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    client.put("/nacos/v1/ns/instance?serviceName=s&ip=1.1.1.1&port=80&weight=3")
    assert client.get(CATALOG, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200
