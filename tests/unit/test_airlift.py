"""The airlift discovery edge over an in-memory runtime (``../shared/facades.md`` §2): every
route, airlift's bodies and statuses, the mapping onto our registry, bad input and trust.

Request bodies come from airlift/discovery's own tests (``airlift_fixtures/``); the scenarios
of ``TestServiceResource`` and ``TestDynamicAnnouncementResource`` are repeated here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from facades.airlift import context as airlift
from facades.airlift.context import AirliftSettings
from facades.airlift.render import FOREIGN_IDS
from node.runtime import NodeRuntime

FIXTURES = Path(__file__).parent / "airlift_fixtures"
ENV = "testing"


@pytest.fixture
def edge(node: NodeRuntime) -> Iterator[NodeRuntime]:
    airlift.install(node, AirliftSettings(environment=ENV, max_age_s=30))
    yield node


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def service(kind: str, properties: dict[str, Any], sid: str | None = None) -> dict[str, Any]:
    return {"id": sid or str(uuid.uuid4()), "type": kind, "properties": properties}


def announcement(pool: str, location: str | None, *services: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"environment": ENV, "pool": pool, "services": list(services)}
    if location is not None:
        body["location"] = location
    return body


def put(client: Client, node_id: str, body: Any, **extra: Any) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.put(f"/v1/announcement/{node_id}", data, content_type="application/json", **extra)


def services(client: Client, path: str = "/v1/service") -> list[dict[str, Any]]:
    answer = client.get(path)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["environment"] == ENV
    return list(body["services"])


def by_id(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in found}


def stored_count(node: NodeRuntime) -> int:
    return node.registry.instance_count


# -- dynamic announcements -------------------------------------------------------------------


def test_put_new_is_202_and_listed_as_announced(edge: NodeRuntime, client: Client) -> None:
    blue = fixture("dynamic-announcement.json")
    node_id = str(uuid.uuid4())
    answer = put(client, node_id, announcement("alpha", "/a/b/c", blue))
    assert answer.status_code == 202 and answer.content == b""
    assert answer["Cache-Control"] == "max-age=10"
    assert services(client) == [
        {
            "id": blue["id"],
            "nodeId": node_id,
            "type": "blue",
            "pool": "alpha",
            "location": "/a/b/c",
            "properties": {"key": "valueA"},
        }
    ]


def test_the_mapping_onto_the_registry(edge: NodeRuntime, client: Client) -> None:
    sid = str(uuid.uuid4())
    body = announcement(
        "general",
        "/rack/1",
        service("trino", {"http": "http://10.1.2.3:8080", "node_version": "476"}, sid),
    )
    assert put(client, "worker-1", body).status_code == 202
    listed = client.get(
        "/nacos/v1/ns/instance/list", {"serviceName": "trino", "groupName": "general"}
    ).json()
    [host] = listed["hosts"]
    assert (host["ip"], host["port"], host["clusterName"], host["ephemeral"]) == (
        "10.1.2.3",
        8080,
        "DEFAULT",
        True,
    )
    assert host["instanceId"] == sid
    meta = host["metadata"]
    assert meta["preserved.source"] == "airlift"
    assert (meta["airlift.id"], meta["airlift.nodeId"]) == (sid, "worker-1")
    assert (meta["airlift.location"], meta["airlift.pool"]) == ("/rack/1", "general")
    assert meta["airlift.property.http"] == "http://10.1.2.3:8080"
    assert meta["airlift.property.node_version"] == "476"
    assert meta["preserved.heart.beat.interval"] == "8000"
    assert meta["preserved.heart.beat.timeout"] == "30000"
    assert meta["preserved.ip.delete.timeout"] == "30000"


def test_https_is_used_without_http_and_neither_gives_a_placeholder(
    edge: NodeRuntime, client: Client
) -> None:
    a = service("s", {"https": "https://host-a:8443"})
    b = service("s", {"https": "https://[::1]"})
    c = service("s", {"key": "no address"})
    d = service("s", {"key": "no address either"})
    assert put(client, "n1", announcement("p", None, a, b, c, d)).status_code == 202
    hosts = client.get("/nacos/v1/ns/instance/list", {"serviceName": "s", "groupName": "p"}).json()[
        "hosts"
    ]
    addresses = sorted((h["ip"], h["port"]) for h in hosts)
    # c and d share the placeholder address (the client's, port 0): the native ids keep them.
    assert addresses == [("127.0.0.1", 0), ("127.0.0.1", 0), ("::1", 443), ("host-a", 8443)]
    assert {s["id"] for s in services(client)} == {a["id"], b["id"], c["id"], d["id"]}


def test_a_missing_location_is_made_up_as_airlift_does(edge: NodeRuntime, client: Client) -> None:
    put(client, "test123", announcement("alpha", None, service("storage", {})))
    [found] = services(client)
    assert found["location"] == "/somewhere/test123"


def test_put_replaces_the_node_s_whole_list(edge: NodeRuntime, client: Client) -> None:
    old = service("storage", {"key": "existing"})
    gone = service("web", {"key": "dropped"})
    other = service("storage", {"key": "other node"})
    put(client, "red", announcement("alpha", "/a/b/c", old, gone))
    put(client, "green", announcement("alpha", "/x", other))
    new = service("storage", {"key": "new"})
    assert put(client, "red", announcement("alpha", "/a/b/c", new)).status_code == 202
    found = by_id(services(client))
    assert set(found) == {new["id"], other["id"]}
    assert found[new["id"]]["properties"] == {"key": "new"}
    # The node's old type is gone from the registry too, not merely hidden.
    assert (
        client.get(
            "/nacos/v1/ns/instance/list", {"serviceName": "web", "groupName": "alpha"}
        ).json()["hosts"]
        == []
    )


def test_a_repeated_put_renews_without_a_write(edge: NodeRuntime, client: Client) -> None:
    body = announcement("alpha", "/a", service("storage", {"http": "http://10.0.0.9:80"}))
    put(client, "n", body)
    view = edge.registry.services("public")[0]
    stats = airlift.stats()
    assert put(client, "n", body).status_code == 202
    assert edge.registry.services("public")[0].revision == view.revision
    assert stats.renewed == 1 and stats.registered == 1


def test_a_changed_property_is_written_and_keeps_the_id(edge: NodeRuntime, client: Client) -> None:
    sid = str(uuid.uuid4())
    put(client, "n", announcement("alpha", "/a", service("storage", {"v": "1"}, sid)))
    put(client, "n", announcement("alpha", "/a", service("storage", {"v": "2"}, sid)))
    [found] = services(client)
    assert (found["id"], found["properties"]) == (sid, {"v": "2"})


def test_presto_cpp_scalars_become_strings(edge: NodeRuntime, client: Client) -> None:
    """Presto's C++ worker sends ``coordinator`` as a JSON boolean."""
    body = announcement(
        "general",
        "/presto",
        service(
            "presto",
            {
                "node_version": "0.288",
                "coordinator": False,
                "connectorIds": "hive,tpch",
                "http": "http://10.0.0.5:8080",
                "workers": 3,
                "ratio": 0.5,
            },
        ),
    )
    assert put(client, "presto-worker-1", body).status_code == 202
    [found] = services(client, "/v1/service/presto/general")
    assert found["properties"] == {
        "node_version": "0.288",
        "coordinator": "false",
        "connectorIds": "hive,tpch",
        "http": "http://10.0.0.5:8080",
        "workers": "3",
        "ratio": "0.5",
    }


def test_delete_removes_the_node_and_is_204_for_an_unknown_one(
    edge: NodeRuntime, client: Client
) -> None:
    red = service("storage", {"key": "valueBlue"})
    blue = service("storage", {"key": "valueBlue"})
    put(client, "red", announcement("alpha", "/a/b/c", red))
    put(client, "blue", announcement("alpha", "/a/b/c", blue))
    answer = client.delete("/v1/announcement/blue")
    assert answer.status_code == 204
    assert set(by_id(services(client))) == {red["id"]}
    assert client.delete(f"/v1/announcement/{uuid.uuid4()}").status_code == 204
    assert client.delete("/v1/announcement/red/").status_code == 204  # the slashed form
    assert services(client) == []


def test_delete_of_one_type(edge: NodeRuntime, client: Client) -> None:
    a, b = service("storage", {}), service("web", {})
    put(client, "n", announcement("alpha", "/a", a, b))
    assert client.delete("/v1/announcement/n/web").status_code == 204
    assert set(by_id(services(client))) == {a["id"]}


# -- lookups ---------------------------------------------------------------------------------


def _three_nodes(client: Client) -> dict[str, dict[str, Any]]:
    """``TestServiceResource``: red (alpha: storage, web), green (alpha), blue (beta)."""
    made = {
        "redStorage": service("storage", {"key": "1"}),
        "redWeb": service("web", {"key": "2"}),
        "greenStorage": service("storage", {"key": "3"}),
        "blueStorage": service("storage", {"key": "4"}),
    }
    put(client, "red", announcement("alpha", "/a/b/c", made["redStorage"], made["redWeb"]))
    put(client, "green", announcement("alpha", "/x/y/z", made["greenStorage"]))
    put(client, "blue", announcement("beta", "/a/b/c", made["blueStorage"]))
    return made


def test_lookups_by_type_and_pool(edge: NodeRuntime, client: Client) -> None:
    made = _three_nodes(client)
    ids = {k: v["id"] for k, v in made.items()}

    def found(path: str) -> set[str]:
        return set(by_id(services(client, path)))

    assert found("/v1/service") == set(ids.values())
    assert found("/v1/service/") == set(ids.values())
    assert found("/v1/service/storage") == {
        ids["redStorage"],
        ids["greenStorage"],
        ids["blueStorage"],
    }
    assert found("/v1/service/web") == {ids["redWeb"]}
    assert found("/v1/service/unknown") == set()
    assert found("/v1/service/storage/alpha") == {ids["redStorage"], ids["greenStorage"]}
    assert found("/v1/service/storage/beta/") == {ids["blueStorage"]}
    assert found("/v1/service/storage/unknown") == set()
    web = by_id(services(client, "/v1/service/web"))[ids["redWeb"]]
    assert (web["nodeId"], web["pool"], web["location"]) == ("red", "alpha", "/a/b/c")


def test_etag_and_304_with_either_header(edge: NodeRuntime, client: Client) -> None:
    put(client, "n", announcement("alpha", "/a", service("storage", {})))
    first = client.get("/v1/service/storage")
    tag = first["ETag"]
    assert first["Cache-Control"] == "max-age=10"
    again = client.get("/v1/service/storage", HTTP_ETAG=tag)  # what airlift's client sends
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", tag)
    assert client.get("/v1/service/storage", HTTP_IF_NONE_MATCH=tag).status_code == 304
    put(client, "m", announcement("alpha", "/b", service("storage", {})))
    changed = client.get("/v1/service/storage", HTTP_ETAG=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag
    assert client.get("/v1/service/storage", HTTP_ETAG='"stale"').status_code == 200


def test_nacos_instances_are_rendered_for_airlift_readers(
    edge: NodeRuntime, client: Client
) -> None:
    def register(ip: str, extra: str = "") -> None:
        answer = client.post(
            "/nacos/v1/ns/instance?serviceName=orders&groupName=general"
            f"&ip={ip}&port=8080&metadata=%7B%22version%22%3A%222%22%7D{extra}"
        )
        assert answer.status_code == 200, answer.content

    register("10.9.0.1")
    register("10.9.0.2", "&healthy=false")
    register("10.9.0.3", "&enabled=false")
    [found] = services(client, "/v1/service/orders/general")
    assert found == {
        "id": str(uuid.uuid5(FOREIGN_IDS, "10.9.0.1#8080#DEFAULT#general@@orders")),
        "nodeId": None,
        "type": "orders",
        "pool": "general",
        "location": "/nacos/DEFAULT",
        "properties": {"version": "2", "http": "http://10.9.0.1:8080"},
    }
    uuid.UUID(found["id"])


# -- static announcements --------------------------------------------------------------------


def test_static_announcements_round_trip(edge: NodeRuntime, client: Client) -> None:
    body = fixture("static-announcement.json")
    created = client.post("/v1/announcement/static", json.dumps(body), "application/json")
    assert created.status_code == 201, created.content
    stored = created.json()
    sid = stored["id"]
    uuid.UUID(sid)
    assert created["Location"] == f"http://testserver/v1/announcement/static/{sid}"
    assert stored == {
        "id": sid,
        "nodeId": None,
        "type": "blue",
        "pool": "poolA",
        "location": "/a/b/c",
        "properties": {"key": "valueA"},
    }
    listed = client.get("/v1/announcement/static").json()
    assert listed == {"environment": ENV, "services": [stored]}
    assert services(client, "/v1/service/blue/poolA") == [stored]
    view = edge.registry.services("public")[0]
    [inst] = view.persistent
    assert (inst.ephemeral, inst.marked, inst.native_id) == (False, True, sid)
    assert client.delete(f"/v1/announcement/static/{sid}").status_code == 204
    assert client.get("/v1/announcement/static").json()["services"] == []
    assert client.delete(f"/v1/announcement/static/{sid}/").status_code == 204


def test_a_static_announcement_without_location_gets_one(edge: NodeRuntime, client: Client) -> None:
    body = {"environment": ENV, "type": "t", "pool": "p", "properties": {}}
    stored = client.post("/v1/announcement/static/", json.dumps(body), "application/json").json()
    assert stored["location"] == f"/somewhere/{stored['id']}"


# -- bad input and trust -----------------------------------------------------------------------


def test_environment_mismatch_is_airlift_s_400_and_stores_nothing(
    edge: NodeRuntime, client: Client
) -> None:
    body = announcement("alpha", "/a", service("storage", {"http": "http://localhost:1111"}))
    body["environment"] = "production"
    answer = put(client, "n", body)
    assert answer.status_code == 400
    assert answer["Content-Type"].startswith("text/plain")
    assert answer.content == b"Environment mismatch. Expected: testing, Provided: production"
    static = dict(fixture("static-announcement.json"), environment="production")
    answer = client.post("/v1/announcement/static", json.dumps(static), "application/json")
    assert answer.status_code == 400 and answer.content.startswith(b"Environment mismatch.")
    assert stored_count(edge) == 0
    assert airlift.stats().wrong_environment == 2


GOOD_ID = "1c001650-7841-11e0-a1f0-0800200c9a66"
GOOD: dict[str, Any] = {"id": GOOD_ID, "type": "red", "properties": {}}


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b"",
        b"\xff\xfe",
        b"null",
        b'{"environment": "testing", "pool": "a", "services": []}',
        b'{"environment": "testing", "pool": "a"}',
        b'{"pool": "a", "services": [{"id": "1c001650-7841-11e0-a1f0-0800200c9a66",'
        b' "type": "x", "properties": {}}]}',
        json.dumps({"environment": ENV, "services": [GOOD]}).encode(),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, id="not-a-uuid")]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, id=None)]}),
        json.dumps(
            {"environment": ENV, "pool": "a", "services": [dict(GOOD, id="{" + GOOD_ID + "}")]}
        ),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, type="")]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, type="a@@b")]}),
        json.dumps({"environment": ENV, "pool": "a b", "services": [GOOD]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, type="x/y")]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [{"id": GOOD_ID}]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, properties=[])]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [dict(GOOD, properties=None)]}),
        json.dumps(
            {"environment": ENV, "pool": "a", "services": [dict(GOOD, properties={"k": None})]}
        ),
        json.dumps(
            {"environment": ENV, "pool": "a", "services": [dict(GOOD, properties={"k": {}})]}
        ),
        json.dumps({"environment": ENV, "pool": "a", "services": [GOOD, GOOD]}),
        json.dumps({"environment": ENV, "pool": "a", "services": [GOOD] * 65}),
        json.dumps({"environment": ENV, "pool": "a", "location": 5, "services": [GOOD]}),
        json.dumps({"environment": 1, "pool": "a", "services": [GOOD]}),
        b'{"environment": "testing", "pool": "a", "services": [{"id": "'
        + GOOD_ID.encode()
        + b'", "type": "x", "properties": {"k": NaN}}]}',
        b"[" * 5000,
    ],
)
def test_malformed_announcements_are_400_and_store_nothing(
    edge: NodeRuntime, client: Client, body: bytes | str
) -> None:
    answer = put(client, "n", body)
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"].startswith("text/plain")
    assert stored_count(edge) == 0


def test_a_bad_announcement_leaves_the_previous_one_alone(
    edge: NodeRuntime, client: Client
) -> None:
    good = service("storage", {"k": "v"})
    put(client, "n", announcement("alpha", "/a", good))
    before = services(client)
    bad = announcement("alpha", "/a", service("storage", {"k": "w"}), {"id": "x", "type": "t"})
    assert put(client, "n", bad).status_code == 400
    assert services(client) == before


@pytest.mark.parametrize("node_id", ["-leading-dash", "has.dot", "x" * 1025, "a%20b"])
def test_bad_node_ids_are_400(edge: NodeRuntime, client: Client, node_id: str) -> None:
    body = announcement("alpha", "/a", service("storage", {}))
    assert put(client, node_id, body).status_code == 400
    assert client.delete(f"/v1/announcement/{node_id}").status_code == 400
    assert stored_count(edge) == 0


def test_oversized_bodies_are_413(edge: NodeRuntime, client: Client) -> None:
    big = announcement("alpha", "/a", service("storage", {"k": "v" * 300_000}))
    assert put(client, "n", big).status_code == 413
    huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"  # past Django's own limit as well
    assert put(client, "n", huge).status_code == 413
    static = dict(fixture("static-announcement.json"), environment=ENV)
    static["properties"] = {"k": "v" * 300_000}
    answer = client.post("/v1/announcement/static", json.dumps(static), "application/json")
    assert answer.status_code == 413
    assert stored_count(edge) == 0


def test_too_many_or_too_long_properties_are_400(edge: NodeRuntime, client: Client) -> None:
    many = announcement("a", "/a", service("s", {f"k{i}": "v" for i in range(121)}))
    assert put(client, "n", many).status_code == 400
    long = announcement("a", "/a", service("s", {"k": "v" * 9000}))
    assert put(client, "n", long).status_code == 400
    assert stored_count(edge) == 0


def test_bad_static_input(edge: NodeRuntime, client: Client) -> None:
    for body in (b"{", b"{}", json.dumps({"environment": ENV, "type": "t", "pool": "p"})):
        answer = client.post("/v1/announcement/static", body, "application/json")
        assert answer.status_code == 400, answer.content
    assert client.delete("/v1/announcement/static/not-a-uuid").status_code == 400
    assert stored_count(edge) == 0


def test_writes_from_untrusted_networks_are_403(edge: NodeRuntime, client: Client) -> None:
    body = announcement("alpha", "/a", service("storage", {}))
    far = {"REMOTE_ADDR": "10.200.0.1"}
    answer = put(client, "n", body, **far)
    assert answer.status_code == 403
    assert b"NAMING_AIRLIFT_TRUSTED_NETWORKS" in answer.content
    assert b"10.200.0.1" in answer.content
    static = json.dumps(dict(fixture("static-announcement.json"), environment=ENV))
    assert (
        client.post("/v1/announcement/static", static, "application/json", **far).status_code == 403
    )
    assert client.delete("/v1/announcement/n", **far).status_code == 403
    assert stored_count(edge) == 0
    # Reads are open, as airlift's are.
    assert client.get("/v1/service", **far).status_code == 200
    assert client.get("/v1/announcement/static", **far).status_code == 200
    assert airlift.stats().untrusted == 3


def test_trusted_networks_and_mapped_addresses() -> None:
    settings = AirliftSettings(trusted_networks=("10.0.0.0/8", "::1/128"))
    assert settings.trusts("10.1.2.3") and settings.trusts("::ffff:10.1.2.3")
    assert settings.trusts("::1")
    assert not settings.trusts("127.0.0.1") and not settings.trusts("not an address")


def test_methods_a_path_lacks_are_405(edge: NodeRuntime, client: Client) -> None:
    assert client.post("/v1/service").status_code == 405
    assert client.get("/v1/announcement/n").status_code == 405
    assert client.put("/v1/announcement/static").status_code == 405


def test_a_starting_node_answers_503(edge: NodeRuntime, client: Client) -> None:
    edge._ready.clear()
    assert client.get("/v1/service").status_code == 503
    body = announcement("alpha", "/a", service("storage", {}))
    assert put(client, "n", body).status_code == 503


def test_the_counters_reach_operator_metrics(edge: NodeRuntime, client: Client) -> None:
    put(client, "n", announcement("alpha", "/a", service("storage", {})))
    client.get("/v1/service")
    metrics = client.get("/nacos/v1/ns/operator/metrics").json()
    assert metrics["airlift"]["announcements"] == 1
    assert metrics["airlift"]["lookups"] == 1
