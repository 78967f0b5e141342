"""Held fetches, revisions and event streams through the v1 edge, over the in-memory runtime
(issue #13): parsing, the answers that wait or stream as the edge builds them (carried out by
the server: tests/unit/test_watching.py), rendering, and the 4xx answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from facades.nacos_v1.events import _scope_resource, frame_event
from facades.nacos_v1.params import Params
from lib.http import Waiting
from lib.watching import EventStream, Held
from naming.domain import ServiceName
from naming.feed import EventKind
from node.runtime import NodeRuntime
from testkit.harness import wait_for

LIST = "/nacos/v1/ns/instance/list?serviceName=s"
EVENTS = "/nacos/v1/ns/events"
SVC = ServiceName("public", "DEFAULT_GROUP@@s")


def register(client: Client, ip: str, service: str = "s", **extra: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in {"serviceName": service, **extra}.items())
    created = client.post(f"/nacos/v1/ns/instance?{query}&ip={ip}&port=80")
    assert created.status_code == 200, created.content


def settled(node: NodeRuntime) -> int:
    """The feed's index once it holds the registry's last change."""
    wait_for(lambda: node.notifier.pending() == 0, 5.0)
    return node.feed.last_index


def sse(first: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in first.decode().split("\n\n"):
        if not block:
            continue
        id_line, data_line = block.split("\n")
        assert id_line.startswith("id: ") and data_line.startswith("data: ")
        found.append((id_line[4:], json.loads(data_line[6:])))
    return found


# -- held fetch ---------------------------------------------------------------------------------


FULLWIDTH_12 = "\uff11\uff12"  # digits to str.isdigit(), not to int parsing rules here


@pytest.mark.parametrize("wait", ["abc", "-1", "60001", "1.5", "5e3", "0x10", FULLWIDTH_12])
def test_a_bad_wait_is_400(node: NodeRuntime, client: Client, wait: str) -> None:
    answer = client.get(f"{LIST}&wait={wait}")
    assert answer.status_code == 400
    assert answer.content.decode().startswith("caused: wait must be an integer from 0 to 60000")


def test_wait_holds_only_with_a_matching_tag(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    tag = client.get(LIST)["ETag"]
    assert client.get(f"{LIST}&wait=1000").status_code == 200
    assert client.get(f"{LIST}&wait=0", HTTP_IF_NONE_MATCH=tag).status_code == 304
    assert client.get(f"{LIST}&wait=1000", HTTP_IF_NONE_MATCH='W/"x"').status_code == 200
    held = client.get(f"{LIST}&wait=60000", HTTP_IF_NONE_MATCH=tag)
    assert isinstance(held, Waiting) and isinstance(held.answer, Held)
    assert (held.answer.key, held.answer.wait_s) == (SVC, 60.0)
    assert held.answer.after <= node.feed.last_index


def test_a_held_list_is_judged_again_after_a_change(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    tag = client.get(LIST)["ETag"]
    held = client.get(f"{LIST}&wait=5000", HTTP_IF_NONE_MATCH=tag)
    assert isinstance(held, Waiting) and isinstance(held.answer, Held)
    again = held.answer.again
    assert again(False) is None  # unchanged: keep waiting
    final = again(True)
    assert final is not None and (final.status_code, final["ETag"]) == (304, tag)
    register(client, "1.1.1.2")
    settled(node)
    changed = again(False)
    assert changed is not None and changed.status_code == 200 and changed["ETag"] != tag
    assert sorted(h["ip"] for h in json.loads(changed.content)["hosts"]) == ["1.1.1.1", "1.1.1.2"]


def test_a_held_catalog_list_answers_404_when_its_cluster_went_away(
    node: NodeRuntime, client: Client
) -> None:
    register(client, "1.1.1.1")
    url = "/nacos/v1/ns/catalog/instances?serviceName=s&clusterName=DEFAULT&pageNo=1&pageSize=10"
    tag = client.get(url)["ETag"]
    held = client.get(f"{url}&wait=5000", HTTP_IF_NONE_MATCH=tag)
    assert isinstance(held, Waiting) and isinstance(held.answer, Held)
    assert (
        client.delete("/nacos/v1/ns/instance?serviceName=s&ip=1.1.1.1&port=80").status_code == 200
    )
    settled(node)
    gone = held.answer.again(False)
    assert gone is not None and gone.status_code == 404


# -- revisions ----------------------------------------------------------------------------------


def test_revisions_of_a_group_and_of_a_namespace(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    register(client, "1.1.1.2", service="t", groupName="G2")
    last = settled(node)
    whole = client.get("/nacos/v1/ns/service/revisions").json()
    assert (whole["namespaceId"], whole["groupName"], whole["lastIndex"]) == ("public", None, last)
    assert whole["epoch"] == node.feed.epoch
    by_name = {(s["groupName"], s["serviceName"]): s for s in whole["services"]}
    view = node.registry.get(SVC)
    assert by_name[("DEFAULT_GROUP", "s")] == {
        "groupName": "DEFAULT_GROUP",
        "serviceName": "s",
        "revision": view.revision,
        "checksum": view.checksum,
    }
    group = client.get("/nacos/v1/ns/service/revisions?groupName=G2").json()
    assert [s["serviceName"] for s in group["services"]] == ["t"] and group["count"] == 1
    assert client.get("/nacos/v1/ns/service/revisions?namespaceId=nope").status_code == 404
    assert client.get("/nacos/v1/ns/service/revisions?groupName=a@@b").status_code == 400


# -- event streams ------------------------------------------------------------------------------


def opened(client: Client, query: str = "", **headers: str) -> EventStream[object]:
    answer = client.get(f"{EVENTS}?{query}", **headers)
    assert isinstance(answer, Waiting), answer.content
    assert isinstance(answer.answer, EventStream)
    return answer.answer


def test_a_stream_starts_with_everything_a_client_needs(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    register(client, "1.1.1.2", healthy="false", ephemeral="false")
    last = settled(node)
    stream = opened(client, "serviceName=s")
    assert stream.headers == [("Content-Type", "text/event-stream; charset=utf-8")]
    assert (stream.after, stream.topic) == (last, ("public", "", "DEFAULT_GROUP@@s"))
    [(event_id, current)] = sse(stream.first)
    assert event_id == f"{node.feed.epoch}-{last}"
    assert current["kind"] == "current" and current["serviceName"] == "s"
    [state] = current["services"]
    assert state["revision"] == node.registry.get(SVC).revision
    hosts = {h["ip"]: (h["healthy"], h["enabled"], h["ephemeral"]) for h in state["hosts"]}
    assert hosts == {"1.1.1.1": (True, True, True), "1.1.1.2": (False, True, False)}
    assert state["leaders"][""]["ip"] == "1.1.1.1"


def test_events_are_framed_like_flynn_with_the_feed_index(
    node: NodeRuntime, client: Client
) -> None:
    register(client, "1.1.1.1")
    settled(node)
    up = next(e for e in node.feed.since(0) if e.kind is EventKind.UP)
    leader = next(e for e in node.feed.since(0) if e.kind is EventKind.LEADER)
    [(event_id, body)] = sse(frame_event(up))
    assert event_id == f"{node.feed.epoch}-{up.index}"
    assert body["kind"] == "up" and body["revision"] == up.revision
    assert (body["namespaceId"], body["groupName"], body["serviceName"]) == (
        "public",
        "DEFAULT_GROUP",
        "s",
    )
    assert body["instance"]["ip"] == "1.1.1.1"
    assert sse(frame_event(leader))[0][1]["scope"] == ""
    assert b"event:" not in frame_event(up)


def test_scopes_match_a_service_a_group_or_the_namespace(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    register(client, "1.1.1.2", service="t", groupName="G2")
    settled(node)
    events = node.feed.since(0)
    s_up = next(e for e in events if e.kind is EventKind.UP and e.service == SVC)
    t_up = next(e for e in events if e.kind is EventKind.UP and e.service != SVC)
    per_service = opened(client, "serviceName=s")
    per_group = opened(client, "groupName=G2")
    whole = opened(client)
    assert per_service.matches(s_up) and not per_service.matches(t_up)
    assert per_group.matches(t_up) and not per_group.matches(s_up)
    assert whole.matches(s_up) and whole.matches(t_up)


def test_last_event_id_replays_the_scope_after_it(node: NodeRuntime, client: Client) -> None:
    register(client, "1.1.1.1")
    mark = settled(node)
    register(client, "1.1.1.2")
    register(client, "1.1.1.3", service="t")  # another service: not replayed
    last = settled(node)
    resumed = opened(client, "serviceName=s", HTTP_LAST_EVENT_ID=f"{node.feed.epoch}-{mark}")
    replay = sse(resumed.first)
    assert [(b["kind"], b["instance"]["ip"]) for _, b in replay] == [("up", "1.1.1.2")]
    assert resumed.after == last
    by_param = opened(client, f"serviceName=s&lastEventId={node.feed.epoch}-{mark}")
    assert by_param.first == resumed.first
    for stale in (f"{node.feed.epoch}-{last + 5}", f"abc-{mark}"):  # ahead, or another epoch
        restarted = opened(client, "serviceName=s", HTTP_LAST_EVENT_ID=stale)
        assert sse(restarted.first)[0][1]["kind"] == "current"


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("lastEventId=nope", {}, 400),
        ("", {"HTTP_LAST_EVENT_ID": "12"}, 400),
        ("", {"HTTP_LAST_EVENT_ID": "ABC-1"}, 400),
        ("serviceName=missing", {}, 404),
        ("namespaceId=missing", {}, 404),
        ("namespaceId=a%2Fb", {}, 400),
        ("groupName=a%20b", {}, 400),
        ("serviceName=a@@", {}, 400),
    ],
)
def test_bad_stream_requests_are_4xx_in_the_nacos_shape(
    node: NodeRuntime, client: Client, query: str, headers: dict[str, str], status: int
) -> None:
    answer = client.get(f"{EVENTS}?{query}", **headers)
    assert not isinstance(answer, Waiting)
    assert answer.status_code == status and answer.content.startswith(b"caused: ")


def test_a_group_stream_on_an_empty_group_is_fine(node: NodeRuntime, client: Client) -> None:
    stream = opened(client, "groupName=EMPTY")
    assert sse(stream.first)[0][1]["services"] == []


def test_streams_are_authorized_on_what_they_cover() -> None:
    def resource(**raw: str) -> str:
        return _scope_resource(Params(raw)).text

    assert resource(namespaceId="dev", serviceName="svc", groupName="G") == "dev:G:naming/svc"
    assert resource(namespaceId="dev", serviceName="G@@svc") == "dev:G:naming/svc"
    assert resource(namespaceId="dev", groupName="G") == "dev:G:naming/*"
    assert resource(namespaceId="dev") == "dev:*:naming/*"
    assert resource() == ":*:naming/*"
