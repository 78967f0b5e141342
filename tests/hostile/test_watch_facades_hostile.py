"""Hostile input on the newest surfaces: watching (issue #13: long-poll and ETags, revisions,
event streams, leader pins) and the Eureka and airlift facades (issue #14).

``test_fuzz.py`` sends generic values to every route; these are the targeted cases: bodies
nested past the recursion limit, lone surrogate escapes (valid JSON, not text), control
characters that XML cannot carry, digits ``int`` refuses (``²``), non-ASCII Basic credentials,
``Last-Event-ID`` and ``If-None-Match`` garbage, pins on what is not there, and streams and held
requests whose clients leave in a tight loop. Every answer must be a 4xx with a message (or the
protocol's own answer), the node UP, a guard (a Nacos service with a pinned leader, a Eureka app,
an airlift static announcement) unchanged, and no traceback in the node's log after each test.

One node of its own (auth on, both facades on their ports, at most 8 event streams).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import struct
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from testkit.grpc_client import GrpcClient, payload
from testkit.harness import HttpResult, NodeProcess, free_port, running_node, wait_for
from tests.unit.test_eureka import body as eureka_body

NS = "/nacos/v1/ns"
GUARD = "hostile-watch-guard"
GUARD_APP = "HOSTILE-GUARD-APP"
APP = "HOSTILE-APP"
AIRLIFT_ENV = "production"
MAX_STREAMS = 8
LONG_BEATS = {  # no beat thread here: the ephemeral guard instance must not expire mid-module
    "preserved.heart.beat.timeout": "3600000",
    "preserved.ip.delete.timeout": "3600000",
}
PAGE = {"pageNo": "1", "pageSize": "10"}  # catalog/instances needs them
DEEP_JSON = '{"instance":' + "[" * 20_000 + "]" * 20_000 + "}"
DEEP_XML = "<instance>" + "<a>" * 3_000 + "</a>" * 3_000 + "</instance>"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    eureka_port = free_port()
    airlift_port = free_port()
    while airlift_port == eureka_port:
        airlift_port = free_port()
    env = {
        "NAMING_EUREKA_PORT": str(eureka_port),
        "NAMING_AIRLIFT_PORT": str(airlift_port),
        "NAMING_AIRLIFT_ENVIRONMENT": AIRLIFT_ENV,
        # Long: a stream whose client left must be released without waiting for a keep-alive
        # write to fail.
        "NAMING_EVENTS_KEEPALIVE_S": "30",
        "NAMING_EVENTS_MAX_STREAMS": str(MAX_STREAMS),
    }
    with running_node(Path(tmp_path_factory.mktemp("hostile-watch")), env=env) as started:
        yield started


# -- talking to the node ------------------------------------------------------------------------


def basic(node: NodeProcess) -> str:
    return "Basic " + base64.b64encode(f"nacos:{node.admin_password}".encode()).decode()


def eureka(
    node: NodeProcess,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResult:
    sent = {"Authorization": basic(node), **(headers or {})}
    return node.request(
        method, path, params, body=body, headers=sent, base=node.facade_base("eureka")
    )


def airlift(
    node: NodeProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResult:
    sent = {"Content-Type": "application/json", **(headers or {})}
    return node.request(method, path, body=body, headers=sent, base=node.facade_base("airlift"))


def registration(app: str, instance_id: str, **changes: Any) -> dict[str, Any]:
    """py-eureka-client's registration body (the Eureka unit tests'), for ``app`` and one id,
    with a lease long enough for the module; ``changes`` replace fields (None drops one)."""
    lease = {"renewalIntervalInSecs": 3600, "durationInSecs": 3600}
    fields: dict[str, Any] = {
        "app": app,
        "instanceId": instance_id,
        "hostName": f"host-{instance_id}",
    }
    fields.update(ipAddr="10.41.0.5", vipAddress=app.lower(), leaseInfo=lease)
    return eureka_body(**{**fields, **changes})


def register_eureka(node: NodeProcess, app: str, instance_id: str, **changes: Any) -> HttpResult:
    body = json.dumps(registration(app, instance_id, **changes)).encode()
    return eureka(
        node, "POST", f"/eureka/apps/{app}", body=body, headers={"Content-Type": "application/json"}
    )


def metrics(node: NodeProcess) -> dict[str, Any]:
    answer = node.request("GET", NS + "/operator/metrics")
    assert answer.status == 200, answer.text
    return dict(answer.json())


def watch_state(node: NodeProcess) -> dict[str, Any]:
    return dict(metrics(node)["http"]["watch"])


def assert_4xx(answer: HttpResult, *fragments: str) -> None:
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    text = answer.body.decode("utf-8", "replace")
    assert text.strip(), "a refusal must say why"
    for fragment in fragments:
        assert fragment in text, text[:300]


# -- raw connections: exact headers, and hanging up at a chosen moment ------------------------


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _hang_up(sock: socket.socket, reset: bool) -> None:
    if reset:  # RST instead of FIN: the server learns at once that the client is gone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _send(
    sock: socket.socket, target: str, headers: list[tuple[str, str]], version: str = "1.1"
) -> None:
    lines = [f"GET {target} HTTP/{version}", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def open_stream(
    node: NodeProcess,
    params: dict[str, str],
    headers: tuple[tuple[str, str], ...] = (),
    version: str = "1.1",
    reset: bool = False,
) -> tuple[int, bytes]:
    """Open ``/events``, read the head and the first event (or the whole refusal), hang up."""
    query = urllib.parse.urlencode({"accessToken": node.token(), **params})
    sock = _connect(node.port)
    try:
        _send(sock, f"{NS}/events?{query}", list(headers), version)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                status = int(head.split(b" ", 2)[1])
                if status != 200:
                    length = re.search(rb"(?i)content-length: *(\d+)", head)
                    if length is not None and len(rest) >= int(length.group(1)):
                        return status, rest
                elif b"\n\n" in rest:
                    return status, rest
            chunk = sock.recv(65536)
            if not chunk:
                head, _, rest = data.partition(b"\r\n\r\n")
                return int(head.split(b" ", 2)[1]), rest
            data += chunk
        raise AssertionError(f"no first event within 10 s: {data[:300]!r}")
    finally:
        _hang_up(sock, reset)


def first_event(body: bytes) -> tuple[str, dict[str, Any]]:
    found = re.search(rb"id: (\S+)\ndata: (.*)\n\n", body)
    assert found is not None, body[:300]
    return found.group(1).decode(), json.loads(found.group(2))


# -- the guard ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guard(node: NodeProcess) -> dict[str, Any]:
    done = [
        node.api(
            "POST",
            "/instance",
            {
                "serviceName": GUARD,
                "ip": "10.40.0.1",
                "port": "80",
                "metadata": json.dumps(LONG_BEATS),
            },
        ),
        node.api(
            "POST",
            "/instance",
            {"serviceName": GUARD, "ip": "10.40.0.2", "port": "81", "ephemeral": "false"},
        ),
        node.api("PUT", "/service/leader", {"serviceName": GUARD, "ip": "10.40.0.2", "port": "81"}),
    ]
    assert [d.text for d in done] == ["ok"] * 3
    assert register_eureka(node, GUARD_APP, "guard-1").status == 204
    static = airlift(
        node,
        "POST",
        "/v1/announcement/static",
        json.dumps(
            {
                "environment": AIRLIFT_ENV,
                "type": "guardtype",
                "pool": "guardpool",
                "properties": {"http": "http://127.0.0.1:18081"},
            }
        ).encode(),
    )
    assert static.status == 201, static.text
    return snapshot(node)


def snapshot(node: NodeProcess) -> dict[str, Any]:
    listed = node.api("GET", "/instance/list", {"serviceName": GUARD}).json()
    listed.pop("lastRefTime")
    app = eureka(node, "GET", f"/eureka/apps/{GUARD_APP}", headers={"Accept": "application/json"})
    looked_up = airlift(node, "GET", "/v1/service/guardtype/guardpool")
    return {
        "list": listed,
        "service": node.api("GET", "/service", {"serviceName": GUARD}).json(),
        "leader": node.api("GET", "/service/leader", {"serviceName": GUARD}).json(),
        "eureka": (app.status, app.json() if app.status == 200 else app.text),
        "airlift": (looked_up.status, looked_up.json()["services"]),
    }


@pytest.fixture(autouse=True)
def guarded(node: NodeProcess, guard: dict[str, Any]) -> Iterator[None]:
    """After each test: the node UP, the guard as it was, and no traceback logged meanwhile."""
    start = node.log_path.stat().st_size
    yield
    assert metrics(node)["status"] == "UP"
    assert snapshot(node) == guard
    with node.log_path.open("rb") as log:
        log.seek(start)
        written = log.read().decode("utf-8", "replace")
    assert "Traceback" not in written, written[-4000:]


# -- Eureka: bodies -----------------------------------------------------------------------------


def _body(**changes: Any) -> bytes:
    return json.dumps(registration(APP, "h-bad", **changes)).encode()


# (case, body, content type, what the refusal says)
REFUSED_BODIES: list[tuple[str, bytes, str, str]] = [
    ("deep-json", DEEP_JSON.encode(), "application/json", "nested deeper"),
    ("deep-xml", DEEP_XML.encode(), "application/xml", "nested deeper"),
    ("surrogate-host", _body(hostName="h\ud800"), "application/json", "surrogate"),
    ("surrogate-id", _body(instanceId="\udfff"), "application/json", "surrogate"),
    ("surrogate-metadata", _body(metadata={"k": "\ud83d"}), "application/json", "surrogate"),
    ("nan-port", _body(port={"$": float("nan")}), "application/json", "finite"),
    ("huge-port", b'{"instance":{"port":1e400}}', "application/json", "out of range"),
    ("huge-country", _body(countryId=10**30), "application/json", "out of range"),
    ("huge-dirty", _body(lastDirtyTimestamp=1e300), "application/json", "out of range"),
    ("huge-lease", _body(leaseInfo={"durationInSecs": 10**25}), "application/json", "range"),
    ("not-utf8", b'{"instance":{"app":"\xff\xfe"}}', "application/json", "JSON"),
    ("gzip", gzip.compress(_body(), mtime=0), "application/json", "JSON"),
    ("gzip-truncated", gzip.compress(_body(), mtime=0)[:40], "application/json", "JSON"),
    ("gzip-bomb", gzip.compress(b"\0" * 4_000_000, mtime=0), "application/xml", "XML"),
    ("xml-entities", b'<!DOCTYPE i [<!ENTITY a "b">]><instance>&a;</instance>', "text/xml", "XML"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [case[1:] for case in REFUSED_BODIES],
    ids=[case[0] for case in REFUSED_BODIES],
)
def test_eureka_registration_bodies_are_refused_with_a_reason(
    node: NodeProcess, body: bytes, content_type: str, says: str
) -> None:
    headers = {"Content-Type": content_type}
    if body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    answer = eureka(node, "POST", f"/eureka/apps/{APP}", body=body, headers=headers)
    assert_4xx(answer, says)
    assert eureka(node, "GET", f"/eureka/apps/{APP}/h-bad").status == 404  # nothing stored


@pytest.mark.parametrize(
    "header",
    [
        "Basic \xe9\xe9\xe9\xe9",  # non-ASCII: not base64 at all
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8 once decoded
        "Basic !!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":password-only").decode(),
        "Basic " + base64.b64encode(b"nacos:wrong-password").decode(),
        "Bearer x",
        "",
    ],
)
def test_eureka_bad_basic_credentials_are_401(node: NodeProcess, header: str) -> None:
    answer = node.request(
        "GET", "/eureka/apps", headers={"Authorization": header}, base=node.facade_base("eureka")
    )
    assert answer.status == 401, answer.text
    assert answer.headers.get("WWW-Authenticate") == 'Basic realm="eureka"'
    assert answer.text


def test_eureka_timestamps_that_are_not_ascii_numbers_are_ignored(node: NodeProcess) -> None:
    """``"²".isdigit()`` holds but ``int("²")`` fails: a status change that stored it made every
    later read of the registry fail, and a renew carrying it failed itself."""
    assert register_eureka(node, APP, "h-dirty").status == 204
    try:
        for dirty in ("²", "١٢", "9" * 5000, "-5", "1e3", " "):
            changed = eureka(
                node,
                "PUT",
                f"/eureka/apps/{APP}/h-dirty/status",
                {"value": "UP", "lastDirtyTimestamp": dirty},
            )
            assert changed.status == 200, (dirty, changed.text)
            renewed = eureka(
                node, "PUT", f"/eureka/apps/{APP}/h-dirty", {"lastDirtyTimestamp": dirty}
            )
            assert renewed.status in (200, 404), (dirty, renewed.text)
            every = eureka(node, "GET", "/eureka/apps")
            assert every.status == 200, (dirty, every.text)
            shown = ElementTree.fromstring(eureka(node, "GET", f"/eureka/apps/{APP}/h-dirty").body)
            assert shown.findtext("lastDirtyTimestamp", "").isdigit()
    finally:
        assert eureka(node, "DELETE", f"/eureka/apps/{APP}/h-dirty").status == 200


def test_eureka_xml_stays_readable_with_characters_xml_cannot_carry(node: NodeProcess) -> None:
    """Nacos metadata may hold control characters; the Eureka XML document of every app must
    still parse (py-eureka-client and Prometheus read it whole)."""
    service = "hostile-ctl"
    note = "a\x01b\x00c\ufffed\x1b"
    done = node.api(
        "POST",
        "/instance",
        {
            "serviceName": service,
            "ip": "10.42.0.1",
            "port": "80",
            "metadata": json.dumps({"note": note, **LONG_BEATS}),
        },
    )
    assert done.text == "ok"
    try:
        listed = node.api("GET", "/instance/list", {"serviceName": service}).json()
        assert listed["hosts"][0]["metadata"]["note"] == note  # stored as sent
        one = eureka(node, "GET", f"/eureka/apps/{service.upper()}")
        assert one.status == 200, one.text
        shown = ElementTree.fromstring(one.body).findtext("instance/metadata/note")
        assert shown == "a\ufffdb\ufffdc\ufffdd\ufffd"
        for path in ("/eureka/apps", "/eureka/apps/delta", "/eureka/vips/hostile-ctl"):
            answer = eureka(node, "GET", path)
            assert answer.status == 200, (path, answer.text)
            ElementTree.fromstring(answer.body)
        as_json = eureka(node, "GET", "/eureka/apps", headers={"Accept": "application/json"})
        assert as_json.status == 200
    finally:
        gone = node.api(
            "DELETE", "/instance", {"serviceName": service, "ip": "10.42.0.1", "port": "80"}
        )
        assert gone.text == "ok"


@pytest.mark.parametrize(
    "instance_id",
    ["%2F", "..", "%2E%2E", "%C3%A9", "%E2%80%AE", "a" * 3000, "%00", "%FF", "a%0Ab", "~"],
)
def test_eureka_odd_instance_ids_are_not_found(node: NodeProcess, instance_id: str) -> None:
    base = f"/eureka/apps/{APP}/"
    for method in ("GET", "PUT", "DELETE"):
        answer = eureka(node, method, base + instance_id)
        assert answer.status in (400, 404), (method, answer.status, answer.text)
    for suffix, params in (("/status", {"value": "DOWN"}), ("/metadata", {"k": "v"})):
        answer = eureka(node, "PUT", base + instance_id + suffix, params)
        assert answer.status in (400, 404), (suffix, answer.status, answer.text)


def test_eureka_metadata_and_status_updates_are_bounded(node: NodeProcess) -> None:
    assert register_eureka(node, APP, "h-meta").status == 204
    try:
        path = f"/eureka/apps/{APP}/h-meta"
        many = {f"k{i}": "v" for i in range(200)}
        assert_4xx(eureka(node, "PUT", path + "/metadata", many), "entries")
        assert_4xx(eureka(node, "PUT", path + "/status"), "Missing value")
        odd = eureka(
            node, "PUT", path + "/metadata", {"\x01": "\x02", "é": "\ud7ff", "a" * 200: "b"}
        )
        assert odd.status == 200, odd.text
        ElementTree.fromstring(eureka(node, "GET", path).body)
    finally:
        assert eureka(node, "DELETE", f"/eureka/apps/{APP}/h-meta").status == 200


# -- lone surrogates through the other JSON inputs ------------------------------------------------


def test_lone_surrogate_escapes_are_refused_by_every_json_input(node: NodeProcess) -> None:
    """``"\\ud800"`` is valid JSON but no text: once stored, every UTF-8 encode of it fails (a
    list's render, the Distro checksum behind operator/metrics, a Eureka XML document)."""
    refused = [
        node.api(
            "POST",
            "/instance",
            {
                "serviceName": "hostile-sur",
                "ip": "10.43.0.1",
                "port": "80",
                "metadata": '{"k":"\\ud800"}',
            },
        ),
        node.api("POST", "/service", {"serviceName": "hostile-sur", "metadata": '{"\\udc00":"v"}'}),
        airlift(
            node,
            "PUT",
            "/v1/announcement/hostile-node",
            b'{"environment":"production","pool":"general","services":[{"id":'
            b'"1b2c3d4e-0000-4000-8000-000000000001","type":"x","properties":{"p":"\\ud800"}}]}',
        ),
        airlift(
            node,
            "POST",
            "/v1/announcement/static",
            b'{"environment":"production","pool":"general","type":"x","location":"\\udbff",'
            b'"properties":{}}',
        ),
    ]
    for answer in refused:
        assert_4xx(answer, "surrogate")
    # A pair (one character) is text, and is kept.
    kept = node.api(
        "POST",
        "/instance",
        {
            "serviceName": "hostile-sur",
            "ip": "10.43.0.2",
            "port": "80",
            "metadata": json.dumps({"smile": "\U0001f600", **LONG_BEATS}),
        },
    )
    assert kept.text == "ok"
    listed = node.api("GET", "/instance/list", {"serviceName": "hostile-sur"})
    assert [h["metadata"]["smile"] for h in listed.json()["hosts"]] == ["\U0001f600"]
    gone = node.api(
        "DELETE", "/instance", {"serviceName": "hostile-sur", "ip": "10.43.0.2", "port": "80"}
    )
    assert gone.text == "ok"


def test_lone_surrogate_escapes_are_refused_over_grpc(node: NodeProcess) -> None:
    """The Nacos 2.x edge decodes its bodies itself; instance metadata still goes through
    ``parse_metadata``, so a register carrying one is refused as over HTTP."""
    client = GrpcClient(node.port + 1000, {"accessToken": node.token()})
    client.connect()
    try:
        instance = {
            "ip": "10.43.0.3",
            "port": 80,
            "clusterName": "DEFAULT",
            "metadata": {"k": "\ud800"},
        }
        body = {
            "requestId": "r1",
            "headers": {},
            "namespace": "public",
            "groupName": "DEFAULT_GROUP",
            "serviceName": "hostile-sur-grpc",
            "type": "registerInstance",
            "instance": instance,
        }
        data = json.dumps(body).encode()  # ASCII: the surrogate travels as its escape
        answer = client.raw(payload("InstanceRequest", data, client.headers))
        assert answer.type == "InstanceResponse", answer
        assert answer.body["errorCode"] == 400 and "surrogate" in answer.body["message"], answer
    finally:
        client.close()
    listed = node.api("GET", "/instance/list", {"serviceName": "hostile-sur-grpc"})
    assert listed.json()["hosts"] == []


# -- airlift ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"environment":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested deeper"),
        (b'{"environment":"production","pool":"general","services":NaN}', "finite"),
        (b'{"environment":"production","pool":"general","services":[{"p":1e400}]}', "range"),
        (b'{"environment":"\xff\xfe"}', "UTF-8"),
        (b"[]", "object"),
        (b"", "JSON"),
        (gzip.compress(b'{"environment":"production"}', mtime=0), "UTF-8"),
    ],
    ids=["deep", "nan", "1e400", "not-utf8", "array", "empty", "gzipped"],
)
def test_airlift_announcement_bodies_are_refused(node: NodeProcess, body: bytes, says: str) -> None:
    answer = airlift(node, "PUT", "/v1/announcement/hostile-node", body)
    assert_4xx(answer, says)


@pytest.mark.parametrize("node_id", ["..", "%2F", "%C3%A9", "a" * 2000, "-a", "%00"])
def test_airlift_odd_node_ids_are_refused(node: NodeProcess, node_id: str) -> None:
    for method in ("PUT", "DELETE"):
        answer = airlift(node, method, f"/v1/announcement/{node_id}", b"{}")
        assert 400 <= answer.status < 500, (method, node_id, answer.status, answer.text)


def test_airlift_lookup_validators_of_any_shape(node: NodeProcess) -> None:
    path = "/v1/service/guardtype/guardpool"
    tag = airlift(node, "GET", path).headers["ETag"]
    for sent, status in (
        ({"ETag": tag}, 304),
        ({"If-None-Match": tag}, 304),
        ({"If-None-Match": f'"x", {tag}'}, 200),  # airlift compares the one value it sent
        ({"If-None-Match": "*"}, 200),
        ({"ETag": "W/" + tag}, 200),
        ({"ETag": "\xff" * 100}, 200),
        ({"If-None-Match": ",".join(['"x"'] * 2000)}, 200),
    ):
        answer = airlift(node, "GET", path, headers=sent)
        assert answer.status == status, (sent, answer.status, answer.text)


# -- watching: Last-Event-ID, If-None-Match, wait, leader pins ---------------------------------


def _epoch(node: NodeProcess) -> str:
    return str(node.api("GET", "/service/revisions").json()["epoch"])


@pytest.mark.parametrize(
    "last_id",
    [
        "abc",
        "-1",
        "99999999999999999999",
        "1-2-3",
        "x-1",
        "ABC-1",
        "1-" + "9" * 19,
        "f" * 17 + "-1",
        "1--1",
        "\xe9-1",
        "1-1,2-2",
    ],
)
def test_last_event_id_garbage_is_400_and_opens_no_stream(node: NodeProcess, last_id: str) -> None:
    before = watch_state(node)["streamsOpened"]
    status, body = open_stream(node, {"serviceName": GUARD}, (("Last-Event-ID", last_id),))
    assert status == 400, body
    assert b"Last-Event-ID must be" in body
    assert watch_state(node)["streamsOpened"] == before


def test_last_event_ids_of_no_use_here_start_over_with_current(node: NodeProcess) -> None:
    """Well-formed ids this member cannot resume from (another incarnation, a position it never
    reached, one repeated header): the stream starts again with ``current``."""
    epoch = _epoch(node)
    other = format(int(epoch, 16) + 1, "x")
    cases = [
        (("Last-Event-ID", f"{other}-1"),),
        (("Last-Event-ID", f"{epoch}-999999999999999999"),),
        (("Last-Event-ID", "0-0"),),
    ]
    for headers in cases:
        status, body = open_stream(node, {"serviceName": GUARD}, headers)
        assert status == 200, (headers, body)
        event_id, data = first_event(body)
        assert data["kind"] == "current" and event_id.startswith(f"{epoch}-"), (headers, data)
    # The header wins over the parameter (a replay of what is kept, or ``current``); a resume
    # from the present sends nothing old.
    last = node.api("GET", "/service/revisions").json()["lastIndex"]
    status, body = open_stream(
        node, {"serviceName": GUARD, "lastEventId": "garbage"}, (("Last-Event-ID", f"{epoch}-0"),)
    )
    assert status == 200 and first_event(body)[0].startswith(f"{epoch}-"), body[:300]
    sock = _connect(node.port)
    try:
        query = urllib.parse.urlencode({"accessToken": node.token(), "serviceName": GUARD})
        _send(sock, f"{NS}/events?{query}", [("Last-Event-ID", f"{epoch}-{last}")])
        sock.settimeout(10)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert b"data:" not in head  # nothing after the present yet: keep-alives only
    finally:
        _hang_up(sock, reset=False)
    wait_for(lambda: watch_state(node)["streamsOpen"] == 0, 20, message="streams closed")


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("*", 304),
        ('W/"x", {tag}', 304),
        ("{bare}", 304),  # the strong form of the weak tag: If-None-Match compares weakly
        (" {tag} ", 304),
        ('W/"nope"', 200),
        (",,,", 200),
        ("\xff\xfe", 200),
        (",".join(['W/"x"'] * 3000), 200),
    ],
)
def test_if_none_match_of_any_shape(node: NodeProcess, value: str, status: int) -> None:
    tag = node.api("GET", "/instance/list", {"serviceName": GUARD}).headers["ETag"]
    sent = value.format(tag=tag, bare=tag.removeprefix("W/"))
    for path, params in (
        ("/instance/list", {"serviceName": GUARD}),
        ("/catalog/instances", {"serviceName": GUARD, "clusterName": "DEFAULT", **PAGE}),
    ):
        answer = node.api("GET", path, params, headers={"If-None-Match": sent})
        assert answer.status == status, (path, sent[:80], answer.status, answer.text)
        if status == 304:
            assert answer.body == b"" and answer.headers["ETag"] == tag


def test_repeated_if_none_match_headers_are_one_list(node: NodeProcess) -> None:
    tag = node.api("GET", "/instance/list", {"serviceName": GUARD}).headers["ETag"]
    query = urllib.parse.urlencode({"accessToken": node.token(), "serviceName": GUARD})
    sock = _connect(node.port)
    try:
        _send(
            sock,
            f"{NS}/instance/list?{query}",
            [("If-None-Match", 'W/"x"'), ("If-None-Match", tag), ("Connection", "close")],
        )
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        _hang_up(sock, reset=False)
    assert answer.startswith(b"HTTP/1.1 304"), answer[:200]


def test_a_held_fetch_with_a_wildcard_ends_with_304(node: NodeProcess) -> None:
    answer = node.api(
        "GET",
        "/instance/list",
        {"serviceName": GUARD, "wait": "300"},
        headers={"If-None-Match": "*"},
    )
    assert answer.status == 304
    assert watch_state(node)["heldNow"] == 0


@pytest.mark.parametrize(
    ("method", "params", "status", "says"),
    [
        ("PUT", {"serviceName": "hostile-missing", "ip": "10.40.0.1", "port": "80"}, 404, ""),
        ("PUT", {"serviceName": GUARD, "ip": "10.99.0.1", "port": "80"}, 404, "no instance"),
        ("PUT", {"serviceName": GUARD, "ip": "10.40.0.1", "port": "81"}, 404, "no instance"),
        ("PUT", {"serviceName": GUARD, "ip": "a b", "port": "80"}, 400, "ip"),
        ("PUT", {"serviceName": GUARD, "ip": "10.40.0.1", "port": "1e400"}, 400, ""),
        ("PUT", {"serviceName": GUARD, "ip": "10.40.0.1", "port": "99999"}, 400, "port"),
        ("PUT", {"serviceName": GUARD, "ip": "10.40.0.1", "port": "-1"}, 400, "port"),
        (
            "PUT",
            {"serviceName": GUARD, "ip": "10.40.0.1", "port": "80", "clusterName": "a/b"},
            400,
            "",
        ),
        (
            "PUT",
            {"serviceName": GUARD, "ip": "10.40.0.1", "port": "80", "clusterName": "NOPE"},
            404,
            "",
        ),
        ("PUT", {"serviceName": GUARD, "ip": "10.40.0.1"}, 400, "port"),
        ("GET", {"serviceName": GUARD, "clusterName": "NOPE"}, 404, ""),
        ("GET", {"serviceName": "hostile-missing"}, 404, ""),
        ("DELETE", {"serviceName": "hostile-missing"}, 404, ""),
        ("DELETE", {"serviceName": GUARD, "clusterName": "NOPE"}, 200, ""),
    ],
)
def test_leader_pins_on_what_is_not_there(
    node: NodeProcess, method: str, params: dict[str, str], status: int, says: str
) -> None:
    answer = node.api(method, "/service/leader", params)
    assert answer.status == status, answer.text
    if status >= 400:
        assert_4xx(answer, "caused: ", says)


@pytest.mark.parametrize(
    "params",
    [
        {"groupName": "a@@b"},
        {"groupName": "x" * 600},
        {"namespaceId": "../public"},
        {"namespaceId": "\x01"},
        {"serviceName": "a" * 600},
        {"serviceName": "@@"},
    ],
)
def test_revisions_and_events_refuse_bad_scopes(node: NodeProcess, params: dict[str, str]) -> None:
    before = watch_state(node)["streamsOpened"]
    if "serviceName" not in params:  # revisions are per group or namespace
        assert_4xx(node.api("GET", "/service/revisions", params), "caused: ")
    status, body = open_stream(node, params)
    assert 400 <= status < 500 and body.startswith(b"caused: "), (status, body[:200])
    assert watch_state(node)["streamsOpened"] == before


# -- streams and held requests whose clients leave ----------------------------------------------


def test_streams_opened_and_dropped_in_a_loop_release_their_slots(node: NodeProcess) -> None:
    wait_for(lambda: watch_state(node)["streamsOpen"] == 0, 20, message="no stream open")
    baseline = watch_state(node)
    statuses: dict[int, int] = {}
    for n in range(200):
        scope = ({"serviceName": GUARD}, {"groupName": "DEFAULT_GROUP"}, {})[n % 3]
        version = "1.0" if n % 4 == 0 else "1.1"
        status, body = open_stream(node, scope, version=version, reset=n % 2 == 0)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 503:  # the cap, while slots of hung-up streams are being released
            assert b"too many event streams" in body
            wait_for(
                lambda: watch_state(node)["streamsOpen"] < MAX_STREAMS, 20, message="a free slot"
            )
        else:
            assert status == 200, body[:200]
    wait_for(lambda: watch_state(node)["streamsOpen"] == 0, 20, message="every slot released")
    after = watch_state(node)
    assert after["streamsOpened"] - baseline["streamsOpened"] == statuses.get(200, 0)

    # The cap: MAX_STREAMS readers that stay; one more is refused with a reason; a slot comes
    # back once one leaves.
    held = []
    try:
        query = urllib.parse.urlencode({"accessToken": node.token(), "serviceName": GUARD})
        for _ in range(MAX_STREAMS):
            sock = _connect(node.port)
            held.append(sock)
            _send(sock, f"{NS}/events?{query}", [])
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        wait_for(lambda: watch_state(node)["streamsOpen"] == MAX_STREAMS, 20, message="all open")
        status, body = open_stream(node, {"serviceName": GUARD})
        assert status == 503 and b"too many event streams" in body
        _hang_up(held.pop(), reset=True)
        wait_for(
            lambda: watch_state(node)["streamsOpen"] == MAX_STREAMS - 1, 20, message="one left"
        )
        assert open_stream(node, {"serviceName": GUARD})[0] == 200
    finally:
        for sock in held:
            _hang_up(sock, reset=True)
    wait_for(lambda: watch_state(node)["streamsOpen"] == 0, 20, message="every slot released")


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
@pytest.mark.parametrize("path", ["/instance/list", "/catalog/instances"])
def test_held_requests_whose_client_leaves_are_released(
    node: NodeProcess, path: str, reset: bool
) -> None:
    """40 long-polls (60 s) whose clients hang up at once (a reset, or a close: a FIN): none
    stays held until its wait ends, whether it left before or after the server began holding
    it."""
    wait_for(lambda: watch_state(node)["heldNow"] == 0, 20, message="nothing held")
    query = urllib.parse.urlencode(
        {
            "accessToken": node.token(),
            "serviceName": GUARD,
            "clusterName": "DEFAULT",
            "wait": "60000",
            **PAGE,
        }
    )
    for n in range(40):
        sock = _connect(node.port)
        _send(sock, f"{NS}{path}?{query}", [("If-None-Match", "*")])
        if n % 2:
            time.sleep(0.02)  # sometimes after the server began holding it
        _hang_up(sock, reset=reset)
    wait_for(lambda: watch_state(node)["heldNow"] == 0, 20, message="every held request released")
