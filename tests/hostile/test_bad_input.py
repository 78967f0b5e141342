"""Issue #8 item 6: input that used to answer 500 is a 4xx with a message and changes nothing.

Deeply nested JSON (RecursionError), non-finite or overflowing JSON ports (OverflowError), an
auth/users page past SQLite's range (Django's HTML 500), and switch values that were stored
although no client can read them back (``Infinity``, ``{}``, 10^30). Also: only a global admin
may change switches. Runs on a node of its own: these tests change switches.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lib.errors import InvalidParam
from naming.domain import Switches, check_switch
from testkit.harness import NodeProcess, running_node

NS = "/nacos/v1/ns"
REF = "hostile-reference"
LONG_BEATS = {  # no beat thread here: the ephemeral reference must not expire mid-module
    "preserved.heart.beat.timeout": "3600000",
    "preserved.ip.delete.timeout": "3600000",
}
DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000
# Under the 16 KiB metadata cap, so the depth (not the size) is what is refused.
DEEP_METADATA_ARRAY = "[" * 3000 + "]" * 3000
DEEP_METADATA_OBJECT = '{"a":' * 2000 + "1" + "}" * 2000


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, as every non-Python JSON parser does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = Path(tmp_path_factory.mktemp("hostile-input"))
    with running_node(data, env={"NAMING_EMPTY_SERVICE_CLEAN": "false"}) as started:
        yield started


@pytest.fixture(scope="module")
def reference(node: NodeProcess) -> dict[str, Any]:
    ok = [
        node.api(
            "POST",
            "/service",
            {"serviceName": REF, "protectThreshold": "0.2", "metadata": "team=core"},
        ),
        node.api(
            "POST",
            "/instance",
            {
                "serviceName": REF,
                "ip": "10.9.0.1",
                "port": "80",
                "metadata": json.dumps({"k": "v", **LONG_BEATS}),
            },
        ),
        node.api(
            "POST",
            "/instance",
            {"serviceName": REF, "ip": "10.9.0.2", "port": "81", "ephemeral": "false"},
        ),
        node.api(
            "PUT",
            "/cluster",
            {
                "serviceName": REF,
                "clusterName": "DEFAULT",
                "checkPort": "80",
                "useInstancePort4Check": "true",
                "healthChecker": '{"type":"NONE"}',
            },
        ),
    ]
    assert [r.text for r in ok] == ["ok"] * 4
    return snapshot(node)


def snapshot(node: NodeProcess) -> dict[str, Any]:
    listed = node.api("GET", "/instance/list", {"serviceName": REF}).json()
    listed.pop("lastRefTime")
    service = node.api("GET", "/service", {"serviceName": REF}).json()
    switches = _strict_json(node.request("GET", NS + "/operator/switches").text)
    return {"list": listed, "service": service, "switches": switches}


def _beat(**fields: Any) -> str:
    return json.dumps({"ip": "10.9.0.1", "port": 80, "cluster": "DEFAULT", **fields})


# (case id, method, path, params): each answered 500 before issue #8.
WAS_500: list[tuple[str, str, str, dict[str, str]]] = [
    (
        "instance-metadata-deep",
        "PUT",
        "/instance",
        {"serviceName": REF, "ip": "10.9.0.1", "port": "80", "metadata": DEEP_METADATA_ARRAY},
    ),
    (
        "instance-metadata-deep-object",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.9.0.1", "port": "80", "metadata": DEEP_METADATA_OBJECT},
    ),
    ("beat-deep", "PUT", "/instance/beat", {"serviceName": REF, "beat": DEEP_ARRAY}),
    (
        "beat-metadata-deep",
        "PUT",
        "/instance/beat",
        {"serviceName": REF, "beat": _beat()[:-1] + ',"metadata":' + DEEP_OBJECT + "}"},
    ),
    (
        "beat-port-infinity",
        "PUT",
        "/instance/beat",
        {"serviceName": REF, "beat": _beat().replace('"port": 80', '"port": Infinity')},
    ),
    (
        "beat-port-1e400",
        "PUT",
        "/instance/beat",
        {"serviceName": REF, "beat": _beat().replace('"port": 80', '"port": 1e400')},
    ),
    (
        "metadata-batch-instances-deep",
        "PUT",
        "/instance/metadata/batch",
        {"serviceName": REF, "metadata": '{"x":"y"}', "instances": DEEP_ARRAY},
    ),
    (
        "metadata-batch-port-1e400",
        "PUT",
        "/instance/metadata/batch",
        {
            "serviceName": REF,
            "metadata": '{"x":"y"}',
            "instances": '[{"ip":"10.9.0.1","port":1e400,"ephemeral":true}]',
        },
    ),
    (
        "metadata-batch-port-infinity",
        "DELETE",
        "/instance/metadata/batch",
        {
            "serviceName": REF,
            "metadata": '{"k":"v"}',
            "instances": '[{"ip":"10.9.0.1","port":-Infinity}]',
        },
    ),
    (
        "service-selector-deep",
        "PUT",
        "/service",
        {"serviceName": REF, "protectThreshold": "0.5", "selector": DEEP_ARRAY},
    ),
    (
        "service-metadata-deep",
        "PUT",
        "/service",
        {"serviceName": REF, "protectThreshold": "0.5", "metadata": DEEP_METADATA_OBJECT},
    ),
    (
        "service-list-selector-deep",
        "GET",
        "/service/list",
        {"pageNo": "1", "pageSize": "10", "selector": DEEP_OBJECT},
    ),
    (
        "cluster-health-checker-deep",
        "PUT",
        "/cluster",
        {
            "serviceName": REF,
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
            "healthChecker": DEEP_OBJECT,
        },
    ),
    ("switch-batch-deep", "PUT", "/operator/switches", {"entry": "batch", "value": DEEP_ARRAY}),
    (
        "switch-limited-url-code-999",  # stored, then every matching request was an HTML 500
        "PUT",
        "/operator/switches",
        {"entry": "limitedUrlMap", "value": f"{NS}/catalog:999"},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "params"), [c[1:] for c in WAS_500], ids=[c[0] for c in WAS_500]
)
def test_former_500_is_4xx_with_message_and_changes_nothing(
    node: NodeProcess,
    reference: dict[str, Any],
    method: str,
    path: str,
    params: dict[str, str],
) -> None:
    result = node.api(method, path, params)

    assert 400 <= result.status < 500, (result.status, result.text[:300])
    assert result.text.startswith("caused: ") and len(result.text) > len("caused: ;")
    assert "Error;" not in result.text  # not a Python exception name
    assert snapshot(node) == reference
    # The limited-url case must not have been stored: catalog still answers.
    assert node.api("GET", "/catalog/services", {"pageNo": "1", "pageSize": "5"}).status == 200


def test_auth_users_page_past_range_is_400_not_html(node: NodeProcess) -> None:
    for page in ("100000000000000000000", "2147483648", "1e400", "NaN"):
        result = node.request(
            "GET", "/nacos/v1/auth/users", {"pageNo": page, "accessToken": node.token()}
        )
        assert result.status == 400, (page, result.status, result.text[:200])
        assert result.text.startswith("caused: ") and "pageNo" in result.text
        assert "<html" not in result.text.lower()
    listed = node.request("GET", "/nacos/v1/auth/users", {"accessToken": node.token()})
    assert listed.status == 200 and listed.json()["totalCount"] >= 1


def test_auth_users_json_array_body_is_400(node: NodeProcess) -> None:
    result = node.request(
        "POST",
        "/nacos/v1/auth/users",
        {"accessToken": node.token()},
        body=b'["username", "password"]',
        headers={"Content-Type": "application/json"},
    )
    assert result.status == 400, result.text[:200]
    assert "JSON object" in result.text


INVALID_BATCHES = [
    '{"defaultCacheMillis": Infinity}',
    '{"defaultCacheMillis": 1000000000000000000000000000000}',
    '{"defaultCacheMillis": {}}',
    '{"defaultCacheMillis": null}',
    '{"defaultCacheMillis": 1500.5}',
    '{"defaultCacheMillis": true}',
    '{"clientBeatInterval": 0}',
    '{"clientBeatInterval": -5}',
    '{"checkTimes": []}',
    '{"distroThreshold": NaN}',
    '{"distroThreshold": 1e400}',
    '{"distroThreshold": 0}',
    '{"distroThreshold": "much"}',
    '{"healthCheckEnabled": "maybe"}',
    '{"pushEnabled": 2}',
    '{"pushJavaVersion": {"a": 1}}',
    '{"pushGoVersion": "1.0; drop"}',
    '{"limitedUrlMap": {"/nacos/v1/ns/catalog": 999}}',
    '{"limitedUrlMap": {"/nacos/v1/ns/catalog": 200}}',
    '{"limitedUrlMap": [1, 2]}',
    '{"overriddenServerStatus": "SLEEPY"}',
    '{"overriddenServerStatus": 5}',
    '{"masters": "a,b"}',
    '{"masters": [1]}',
    '{"defaultPushCacheMillis": 10000, "serverStatusSynchronizationPeriodMillis": 1e300}',
    "[1, 2]",
    '"batch"',
    "{",
]
INVALID_ENTRIES = [
    ("defaultCacheMillis", "1" + "0" * 30),
    ("defaultCacheMillis", "Infinity"),
    ("pushCacheMillis", "NaN"),
    ("clientBeatInterval", "99999999999"),
    ("healthCheckTimes", "0"),
    ("distroThreshold", "Infinity"),
    ("distroThreshold", "1e400"),
    ("distroThreshold", "2"),
    ("pushVersion", "java:" + "1." * 40 + "1"),
    ("limitedUrlMap", "/nacos/v1/ns/catalog:200"),
    ("limitedUrlMap", "/nacos/v1/ns/catalog:1" + "0" * 30),
]


@pytest.mark.parametrize("value", INVALID_BATCHES)
def test_invalid_switch_batch_is_refused_and_switches_stay_readable(
    node: NodeProcess, reference: dict[str, Any], value: str
) -> None:
    result = node.api("PUT", "/operator/switches", {"entry": "batch", "value": value})

    assert result.status == 400, (value, result.status, result.text[:300])
    assert result.text.startswith("caused: ")
    assert snapshot(node) == reference  # switches JSON parses strictly and is unchanged


@pytest.mark.parametrize(("entry", "value"), INVALID_ENTRIES)
def test_invalid_switch_entry_is_refused(
    node: NodeProcess, reference: dict[str, Any], entry: str, value: str
) -> None:
    result = node.api("PUT", "/operator/switches", {"entry": entry, "value": value})

    assert result.status == 400, (entry, value, result.status, result.text[:300])
    assert snapshot(node) == reference


def test_valid_switches_are_still_accepted(node: NodeProcess, reference: dict[str, Any]) -> None:
    before = reference["switches"]
    # What GET returns can be sent back whole (fields we do not model are ignored).
    round_trip = node.api(
        "PUT", "/operator/switches", {"entry": "batch", "value": json.dumps(before)}
    )
    assert (round_trip.status, round_trip.text) == (200, "ok")
    assert snapshot(node)["switches"] == before

    changed = {
        "defaultCacheMillis": 4000,
        "clientBeatInterval": 6000.0,  # an integral float is an integer, as Jackson reads it
        "distroThreshold": 0.5,
        "pushEnabled": "false",
        "limitedUrlMap": {f"{NS}/catalog/services": 429},
        "overriddenServerStatus": None,
        "pushJavaVersion": "1.2.3",
    }
    try:
        result = node.api(
            "PUT", "/operator/switches", {"entry": "batch", "value": json.dumps(changed)}
        )
        assert (result.status, result.text) == (200, "ok")
        entry = node.api("PUT", "/operator/switches", {"entry": "healthCheckTimes", "value": "5"})
        assert (entry.status, entry.text) == (200, "ok")
        now = _strict_json(node.request("GET", NS + "/operator/switches").text)
        assert now["defaultCacheMillis"] == 4000 and now["clientBeatInterval"] == 6000
        assert now["distroThreshold"] == 0.5 and now["pushEnabled"] is False
        assert now["limitedUrlMap"] == {f"{NS}/catalog/services": 429}
        assert now["checkTimes"] == 5 and now["pushJavaVersion"] == "1.2.3"
        listed = node.api("GET", "/instance/list", {"serviceName": REF}).json()
        assert listed["cacheMillis"] == 4000
        limited = node.api("GET", "/catalog/services", {"pageNo": "1", "pageSize": "5"})
        assert limited.status == 429
    finally:
        restore = node.api(
            "PUT", "/operator/switches", {"entry": "batch", "value": json.dumps(before)}
        )
        assert (
            restore.status == 200
            and node.api(
                "PUT", "/operator/switches", {"entry": "limitedUrlMap", "value": "null"}
            ).status
            == 200
        )
    assert snapshot(node) == reference


def test_an_overridden_down_status_can_be_lifted_again(
    node: NodeProcess, reference: dict[str, Any]
) -> None:
    """The status override is persisted: if it also closed the switches endpoint, a node set
    DOWN by mistake could never be brought back, not even by a restart."""
    down = node.api(
        "PUT", "/operator/switches", {"entry": "overriddenServerStatus", "value": "DOWN"}
    )
    assert down.text == "ok"
    try:
        assert node.api("GET", "/instance/list", {"serviceName": REF}).status == 503
        assert node.request("GET", NS + "/operator/switches").status == 200
    finally:
        lifted = node.api(
            "PUT", "/operator/switches", {"entry": "overriddenServerStatus", "value": "null"}
        )
    assert (lifted.status, lifted.text) == (200, "ok")
    assert snapshot(node) == reference


def test_only_a_global_admin_may_change_switches(
    node: NodeProcess, reference: dict[str, Any]
) -> None:
    username, password = f"user{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    node.create_user(username, password)  # read and write on the public namespace
    login = node.request(
        "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
    )
    token = login.json()["accessToken"]
    assert login.json()["globalAdmin"] is False

    for params in (
        {"entry": "clientBeatInterval", "value": "7000", "accessToken": token},
        {"entry": "batch", "value": '{"pushEnabled": false}', "accessToken": token},
        {
            "entry": "overriddenServerStatus",
            "value": "DOWN",
            "username": username,
            "password": password,
        },
    ):
        refused = node.request("PUT", NS + "/operator/switches", params)
        assert (refused.status, refused.text) == (403, "authorization failed!"), params
    assert snapshot(node) == reference

    # The same user keeps the naming API it was granted, and reading the switches.
    assert node.request("GET", NS + "/operator/switches").status == 200
    own = node.request(
        "POST",
        NS + "/instance",
        {"serviceName": f"user-{username}", "ip": "10.9.1.1", "port": "80", "accessToken": token},
    )
    assert (own.status, own.text) == (200, "ok")
    admin = node.api("PUT", "/operator/switches", {"entry": "clientBeatInterval", "value": "5000"})
    assert (admin.status, admin.text) == (200, "ok")

    # Zeroing the push statistics is node-wide too: refused to the user, allowed to the admin.
    reset = node.request(
        "GET", NS + "/operator/push/state", {"reset": "true", "accessToken": token}
    )
    assert (reset.status, reset.text) == (403, "authorization failed!")
    reset = node.api("GET", "/operator/push/state", {"reset": "true"})
    assert reset.status == 200 and reset.json()["reset"] is True


# -- the typed switch checker itself (no node) ------------------------------------------------


def test_every_switch_field_has_a_checker_that_accepts_its_default() -> None:
    defaults = Switches()
    for name, value in Switches().to_json().items():
        if hasattr(defaults, name):
            assert check_switch(name, value) == getattr(defaults, name) or (
                name == "limitedUrlMap" and dict(check_switch(name, value)) == {}
            )


def test_restoring_switches_stored_before_validation_drops_the_bad_fields() -> None:
    """A snapshot written by the old code may hold values no client can read back."""
    stored = {
        **Switches().to_json(),
        "defaultCacheMillis": 10**30,
        "distroThreshold": math.inf,
        "checkTimes": {},
        "limitedUrlMap": {"/nacos/v1/ns/catalog": 999},
        "clientBeatInterval": 7000,
    }
    restored = Switches.from_json(stored)
    assert restored == Switches(clientBeatInterval=7000)
    assert _strict_json(json.dumps(restored.to_json()))["clientBeatInterval"] == 7000


def test_switch_checker_raises_only_invalid_param() -> None:
    """It runs inside the Raft apply: any other exception would hit every replica's apply."""
    odd: list[Any] = [None, {}, [], "x", math.nan, -math.inf, 10**400, 1.5, True, [[]], {"a": {}}]
    for name in Switches.__dataclass_fields__:
        for value in odd:
            try:
                check_switch(name, value)
            except InvalidParam:
                pass


def test_json_reader_counts_depth_outside_strings_only() -> None:
    """Brackets inside JSON strings (or k=v metadata) are data, not nesting."""
    from naming.domain import parse_metadata
    from naming.parsing import MAX_JSON_DEPTH, parse_json

    brackets = "[{" * 40
    assert parse_json(json.dumps({"a": brackets, "b": '\\"[['}), "p") == {
        "a": brackets,
        "b": '\\"[[',
    }
    assert parse_metadata(f"k={brackets}") == {"k": brackets}
    nested: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    assert parse_json(json.dumps(nested), "p") == nested
    with pytest.raises(InvalidParam, match="nested deeper"):
        parse_json(json.dumps([nested]), "p")
    for bad in ('{"a": NaN}', "[Infinity]", "[-1e400]", '{"a": 1e999}', "1" * 5000):
        with pytest.raises(InvalidParam):
            parse_json(bad, "p")
