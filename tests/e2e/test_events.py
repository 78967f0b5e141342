"""Held fetches, service revisions and event streams against a real node (issue #13, items 2-3),
with a real HTTP client (httpx) and a real SSE client library (httpx-sse, through
``testkit.sse``). Every event a stream sends is checked: each test reads what its changes must
give, then that nothing more comes.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.harness import NodeProcess, running_node, wait_for
from testkit.sse import EVENTS, stream

LIST = "/nacos/v1/ns/instance/list"
REVISIONS = "/nacos/v1/ns/service/revisions"
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node of its own: a short keep-alive, so an idle stream shows one within the test."""
    env = {"NAMING_EVENTS_KEEPALIVE_S": "0.5"}
    with running_node(Path(tmp_path_factory.mktemp("events")), env=env) as started:
        yield started


@pytest.fixture
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.base, timeout=30) as client:
        yield client


def register(node: NodeProcess, svc: str, ip: str, **extra: Any) -> None:
    done = node.api("POST", "/instance", {"serviceName": svc, "ip": ip, "port": 80, **extra})
    assert (done.status, done.text) == (200, "ok"), done.text


def watch_state(node: NodeProcess) -> dict[str, Any]:
    state: dict[str, Any] = node.request("GET", "/nacos/v1/ns/operator/metrics").json()["http"][
        "watch"
    ]
    return state


# -- held fetch (long-poll) ----------------------------------------------------------------------


def test_a_held_list_returns_the_new_list_soon_after_a_change(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    register(node, svc, "10.20.0.1")
    query = {"serviceName": svc, "accessToken": node.token()}
    first = http.get(LIST, params=query)
    tag = first.headers["ETag"]
    changed_at: list[float] = []

    def change() -> None:
        time.sleep(0.5)  # the request is held by then
        register(node, svc, "10.20.0.2")
        changed_at.append(time.monotonic())

    changer = threading.Thread(target=change)
    changer.start()
    started = time.monotonic()
    held = http.get(LIST, params={**query, "wait": 20000}, headers={"If-None-Match": tag})
    answered = time.monotonic()
    changer.join()
    assert held.status_code == 200 and held.headers["ETag"] != tag
    assert sorted(h["ip"] for h in held.json()["hosts"]) == ["10.20.0.1", "10.20.0.2"]
    assert answered - started < 15  # woken by the change, not by the end of the wait
    # From the register's answer to the held answer (not asserted: a loaded box varies).
    print(f"\nlong-poll wake latency: {(answered - changed_at[0]) * 1000:.1f} ms after the change")
    assert watch_state(node)["heldWoken"] >= 1


def test_a_held_list_answers_304_at_the_end_of_its_wait(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    register(node, svc, "10.20.1.1")
    query = {"serviceName": svc, "accessToken": node.token()}
    tag = http.get(LIST, params=query).headers["ETag"]
    started = time.monotonic()
    held = http.get(LIST, params={**query, "wait": 400}, headers={"If-None-Match": tag})
    assert (held.status_code, held.content, held.headers["ETag"]) == (304, b"", tag)
    assert time.monotonic() - started >= 0.35
    # The same connection serves on afterwards.
    assert http.get(LIST, params=query).status_code == 200


def test_wait_without_a_matching_tag_answers_at_once(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    register(node, svc, "10.20.2.1")
    query = {"serviceName": svc, "accessToken": node.token(), "wait": 60000}
    started = time.monotonic()
    assert http.get(LIST, params=query).status_code == 200
    stale = http.get(LIST, params=query, headers={"If-None-Match": 'W/"stale"'})
    assert stale.status_code == 200 and time.monotonic() - started < 20


def test_a_held_catalog_list_wakes_on_a_change(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    register(node, svc, "10.20.3.1")
    url = "/nacos/v1/ns/catalog/instances"
    query: dict[str, Any] = {"serviceName": svc, "clusterName": "DEFAULT", "pageNo": 1}
    query.update(pageSize=10, accessToken=node.token())
    tag = http.get(url, params=query).headers["ETag"]
    threading.Timer(0.5, register, (node, svc, "10.20.3.2")).start()
    held = http.get(url, params={**query, "wait": 20000}, headers={"If-None-Match": tag})
    assert held.status_code == 200 and held.json()["count"] == 2


# -- revisions ----------------------------------------------------------------------------------


def test_revisions_of_a_group_move_with_its_services(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    group = f"REV{secrets.token_hex(3)}"
    register(node, svc, "10.21.0.1", groupName=group)
    query = {"groupName": group, "accessToken": node.token()}
    before = http.get(REVISIONS, params=query).json()
    assert [(s["groupName"], s["serviceName"]) for s in before["services"]] == [(group, svc)]
    assert before["epoch"] and before["lastIndex"] > 0
    register(node, svc, "10.21.0.2", groupName=group)

    def moved() -> dict[str, Any] | None:
        after: dict[str, Any] = http.get(REVISIONS, params=query).json()
        return after if after["lastIndex"] > before["lastIndex"] else None

    after = wait_for(moved, 10, message="the revision moved")
    assert after["services"][0]["revision"] > before["services"][0]["revision"]
    assert after["services"][0]["checksum"] != before["services"][0]["checksum"]
    whole = http.get(REVISIONS, params={"accessToken": node.token()}).json()
    assert any(s["groupName"] == group for s in whole["services"])


# -- event streams ------------------------------------------------------------------------------


def test_a_stream_delivers_current_then_one_event_per_change_in_order(
    node: NodeProcess, svc: str
) -> None:
    register(node, svc, "10.22.0.1", weight=1)
    changes = 1000
    with stream(node, {"serviceName": svc}) as reader:
        assert reader.status == 200
        current = json.loads(reader.next().data)
        assert current["kind"] == "current" and current["serviceName"] == svc
        (state,) = current["services"]
        assert [h["ip"] for h in state["hosts"]] == ["10.22.0.1"]
        assert state["leaders"][""]["ip"] == "10.22.0.1" and state["checksum"]
        weights = [round(2 + i / 100, 2) for i in range(changes)]
        with httpx.Client(base_url=node.base, timeout=30) as writer:
            for weight in weights:
                done = writer.post(
                    "/nacos/v1/ns/instance",
                    params={
                        "serviceName": svc,
                        "ip": "10.22.0.1",
                        "port": 80,
                        "weight": weight,
                        "accessToken": node.token(),
                    },
                )
                assert done.text == "ok"
        got = reader.changes(changes, timeout=120)
        assert [e["kind"] for e in got] == ["update"] * changes
        assert [e["instance"]["weight"] for e in got] == weights
        assert {e["instance"]["ip"] for e in got} == {"10.22.0.1"}
        ids = [int(e["id"].rpartition("-")[2]) for e in got]
        assert ids == sorted(ids) and len(set(ids)) == changes
        revisions = [e["revision"] for e in got]
        assert revisions == sorted(revisions)
        reader.nothing_more()
        # Idle since the last change: a keep-alive comes on the node's timer (0.5 s here) and is
        # counted by the reader's thread, which a loaded box may do after the 1 s pause above.
        wait_for(lambda: reader.keepalives >= 1, 10, interval_s=0.05, message="a keep-alive")


def test_resume_with_last_event_id_loses_nothing(node: NodeProcess, svc: str) -> None:
    register(node, svc, "10.23.0.1")
    with stream(node, {"serviceName": svc}) as reader:
        assert json.loads(reader.next().data)["kind"] == "current"
        register(node, svc, "10.23.0.2")
        seen = reader.changes(1)  # the leader (10.23.0.1, the oldest) stays
        reader.nothing_more()
    assert [(e["kind"], e["instance"]["ip"]) for e in seen] == [("up", "10.23.0.2")]
    last_id = seen[0]["id"]
    # While disconnected: two instances come, the leader goes.
    for ip in ("10.23.0.3", "10.23.0.4"):
        register(node, svc, ip)
    done = node.api("DELETE", "/instance", {"serviceName": svc, "ip": "10.23.0.1", "port": 80})
    assert done.text == "ok"
    with stream(node, {"serviceName": svc}, {"Last-Event-ID": last_id}) as reader:
        replay = reader.changes(5)
        reader.nothing_more()
    kinds = [(e["kind"], e.get("scope"), (e["instance"] or {}).get("ip")) for e in replay]
    assert kinds == [
        ("up", None, "10.23.0.3"),
        ("up", None, "10.23.0.4"),
        ("removed", None, "10.23.0.1"),
        ("leader", "", "10.23.0.2"),  # of the service
        ("leader", "DEFAULT", "10.23.0.2"),  # of its cluster
    ]
    ids = [int(e["id"].rpartition("-")[2]) for e in replay]
    assert ids[0] > int(last_id.rpartition("-")[2]) and ids == sorted(ids)


def test_an_id_from_another_epoch_starts_again_with_current(node: NodeProcess, svc: str) -> None:
    register(node, svc, "10.24.0.1")
    with stream(node, {"serviceName": svc, "lastEventId": "1-5"}) as reader:
        assert json.loads(reader.next().data)["kind"] == "current"


def test_a_group_stream_sees_services_created_after_it_opened(node: NodeProcess) -> None:
    group = f"GRP{secrets.token_hex(3)}"
    register(node, "before", "10.25.0.1", groupName=group)
    with stream(node, {"groupName": group}) as reader:
        current = json.loads(reader.next().data)
        assert [s["serviceName"] for s in current["services"]] == ["before"]
        register(node, "after", "10.25.0.2", groupName=group)
        register(node, "elsewhere", "10.25.0.3")  # DEFAULT_GROUP: not in this stream
        got = reader.changes(3)
        reader.nothing_more()
    assert [(e["kind"], e["serviceName"], e["groupName"], e.get("scope")) for e in got] == [
        ("up", "after", group, None),
        ("leader", "after", group, ""),
        ("leader", "after", group, "DEFAULT"),
    ]
    assert {e["instance"]["ip"] for e in got} == {"10.25.0.2"}


def test_bad_input_answers_4xx_and_holds_nothing(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    register(node, svc, "10.26.0.1")
    token = node.token()
    before = watch_state(node)
    query = {"serviceName": svc, "accessToken": token}
    tag = http.get(LIST, params=query).headers["ETag"]
    for wait in ("abc", "60001", "-1", "1.5", "99999999999999999999"):
        bad = http.get(LIST, params={**query, "wait": wait}, headers={"If-None-Match": tag})
        assert bad.status_code == 400 and bad.text.startswith("caused: wait must be"), bad.text
    cases = [
        ({"lastEventId": "garbage"}, 400),
        ({"lastEventId": "abc-12-3"}, 400),
        ({"serviceName": f"{svc}-missing"}, 404),
        ({"namespaceId": f"missing-{secrets.token_hex(3)}"}, 404),
        ({"namespaceId": "bad/namespace"}, 400),
        ({"groupName": "bad group!"}, 400),
    ]
    for params, status in cases:
        answer = http.get(EVENTS, params={"accessToken": token, **params})
        assert answer.status_code == status, (params, answer.text)
        assert answer.text.startswith("caused: "), answer.text
    bad_id = http.get(EVENTS, params={"accessToken": token}, headers={"Last-Event-ID": "x-1"})
    assert bad_id.status_code == 400
    assert (
        http.get(REVISIONS, params={"accessToken": token, "namespaceId": "nope"}).status_code == 404
    )
    after = watch_state(node)
    opened = ("heldTotal", "streamsOpened")
    assert [after[k] for k in opened] == [before[k] for k in opened]


def test_a_user_without_read_on_the_namespace_is_refused(
    node: NodeProcess, http: httpx.Client, svc: str
) -> None:
    user, password = f"outsider-{secrets.token_hex(3)}", "outsider-pass-1"
    node.create_user(user, password, ((f"other-{secrets.token_hex(3)}:*:*", "r"),))
    register(node, svc, "10.27.0.1")
    before = watch_state(node)
    login = http.post("/nacos/v1/auth/login", data={"username": user, "password": password})
    token = login.json()["accessToken"]
    cases: list[tuple[str, dict[str, Any]]] = [
        (EVENTS, {}),
        (EVENTS, {"serviceName": svc}),
        (EVENTS, {"groupName": "DEFAULT_GROUP"}),
        (REVISIONS, {}),
        (LIST, {"serviceName": svc, "wait": 5000}),
    ]
    for path, params in cases:
        refused = http.get(path, params={**params, "accessToken": token})
        assert refused.status_code == 403, (path, params, refused.text)
    after = watch_state(node)
    opened = ("heldTotal", "streamsOpened")
    assert [after[k] for k in opened] == [before[k] for k in opened]


def test_a_stream_ends_and_a_held_request_answers_on_shutdown(tmp_path: Path) -> None:
    with running_node(tmp_path / "n") as node:
        register(node, "svc", "10.28.0.1")
        token = node.token()
        with httpx.Client(base_url=node.base, timeout=30) as http:
            tag = http.get(LIST, params={"serviceName": "svc", "accessToken": token}).headers[
                "ETag"
            ]
            answers: list[int] = []

            def hold() -> None:
                with httpx.Client(base_url=node.base, timeout=30) as client:
                    held = client.get(
                        LIST,
                        params={"serviceName": "svc", "accessToken": token, "wait": 60000},
                        headers={"If-None-Match": tag},
                    )
                    answers.append(held.status_code)

            holder = threading.Thread(target=hold)
            holder.start()
            with stream(node, {"serviceName": "svc"}) as reader:
                reader.next()
                wait_for(lambda: watch_state(node)["heldNow"] == 1, 10, message="held")
                started = time.monotonic()
                node.stop()
                holder.join(20)
                assert answers == [304]
                assert time.monotonic() - started < 15  # not the 60 s wait


def test_the_counts_are_in_metrics(node: NodeProcess, svc: str) -> None:
    register(node, svc, "10.29.0.1")
    with stream(node, {"serviceName": svc}) as reader:
        reader.next()
        wait_for(lambda: watch_state(node)["streamsOpen"] >= 1, 10, message="open")
        text = node.request("GET", "/metrics").text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["naming_http_event_streams"] >= 1
    assert samples["naming_http_held_requests"] == 0
    assert samples["naming_http_streams_opened_total"] >= 1
    assert "naming_http_events_sent_total" in samples
    assert samples["naming_http_frame_errors_total"] == 0
    assert "naming_http_held_woken_total" in samples
