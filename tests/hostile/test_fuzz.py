"""Issue #8 acceptance: a randomized fuzz over every endpoint; no 5xx, a guard namespace untouched.

Every route of ``naming/urls.py`` (read from the URL table itself, so a new endpoint is fuzzed
without editing this file), plus auth and core, gets random methods, parameter names and
adversarial values (huge and non-finite numbers, nested and broken JSON, unicode, control
characters, empty, very long, bad booleans), in the query string or a form body, with and
without credentials. Every answer must be below 500; the one exception is Nacos's own 501
"no such api" for a method or path that does not exist (part of the compatible contract).

A guard namespace populated first (ephemeral and persistent instances, service meta, a cluster)
must read back identically afterwards. The fuzzer never sends its name (by construction: any
value containing it is replaced), but targets the default namespace freely.

Bounded and reproducible: ``FUZZ_EXAMPLES`` examples (default below, about a minute on a loaded
2-core box) of 1-3 requests each, ``derandomize=True`` unless ``FUZZ_SEED`` asks for a seed of
its own. It runs on a node of its own, since it changes switches (reset after every accepted
change, so an overridden DOWN status or a limited URL does not turn the next request into a
legitimate 503).
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from facades.console.urls import console_patterns
from facades.eureka.urls import PREFIXES as EUREKA_PREFIXES
from facades.eureka.urls import ROUTES as EUREKA_ROUTES
from facades.nacos_v1.urls import ns_patterns
from naming.domain import Switches
from testkit.harness import NodeProcess, free_port, running_node

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
FUZZ_SEED = os.environ.get("FUZZ_SEED", "")
GUARD = "fuzz-guard-ns"
NS = "/nacos/v1/ns/"
FORM = "application/x-www-form-urlencoded"
EUREKA_BASES = ["/" + prefix for prefix in EUREKA_PREFIXES]

NS_ROUTES = [p.pattern._route for p in ns_patterns if hasattr(p.pattern, "_route")]
PATHS = [
    *(NS + route for route in NS_ROUTES),
    "/nacos/v1/auth/login",
    "/nacos/v1/auth/users/login",
    "/nacos/v1/auth/logout",
    "/nacos/v1/auth/users",
    "/nacos/v1/auth/users/search",
    "/nacos/v1/auth/users/admin",
    "/nacos/v1/auth/roles",
    "/nacos/v1/auth/roles/search",
    "/nacos/v1/auth/permissions",
    "/nacos/v1/console/namespaces",
    "/nacos/v1/console/server/state",
    "/nacos/v1/console/health/liveness",
    "/nacos/v1/console/health/readiness",
    "/nacos/v1/console/audit",
    "/nacos/v1/core/cluster/nodes",
    "/nacos/v1/core/loader/current",
    "/metrics",
    NS + "no/such/api",  # the catch-all route of naming/urls.py
    # The console's pages: without a session every one redirects to the login page or refuses
    # a POST without its CSRF token; what a session can send is checked in process
    # (tests/unit/test_console*.py) and in the browser tests.
    *("/" + p.pattern._route for p in console_patterns if "<" not in p.pattern._route),
    "/nacos/console/static/console/console.css",
    "/nacos/console/static/../../server/settings.py",
    # The Eureka facade (sent to its own port, with Basic credentials for "admin"), and the
    # path its writes are forwarded to on a member's main port (signed requests only).
    *(
        base
        + route.replace("<str:app>", "FZAPP")
        .replace("<str:instance_id>", "fz1")
        .replace("<str:vip>", "fzvip")
        .replace("<str:svip>", "fzvip")
        for base in EUREKA_BASES
        for route, _ in EUREKA_ROUTES
    ),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

# Every parameter name the endpoints read, so most requests get past "missing parameter".
PARAM_NAMES = [
    "serviceName", "groupName", "namespaceId", "ip", "port", "weight", "healthy", "enabled",
    "enable", "ephemeral", "metadata", "clusterName", "cluster", "clusters", "beat", "instances",
    "consistencyType", "key", "selector", "protectThreshold", "pageNo", "pageSize", "expr",
    "healthyOnly", "udpPort", "clientIP", "app", "env", "isCheck", "checkPort",
    "useInstancePort4Check", "healthChecker", "entry", "value", "username", "password",
    "newPassword", "accessToken", "detail", "reset", "keyword", "serviceNameParam",
    "groupNameParam", "instance", "hasIpCount", "withInstances", "dom", "valid", "tenant",
    "role", "resource", "action", "search", "customNamespaceId", "namespaceName",
    "namespaceDesc", "namespaceShowName", "namespace", "show", "checkNamespaceIdExist",
    "object", "user", "kind", "since", "until", "scope", "name", "group", "page", "size",
    "wait", "lastEventId",
]  # fmt: skip

ADVERSARIAL = [
    "", " ", "\t", "null", "None", "undefined", "NaN", "-NaN", "Infinity", "-Infinity", "inf",
    "1e400", "-1e400", "1e-400", "-0", "0", "-1", "1", "1.5", "0x10", "1_000", "\uff18\uff10", "٨٠",
    "2147483647", "2147483648", "-2147483649", "9" * 30, "9" * 5000,
    "true", "false", "True", "FALSE", "yes", "no", "y", "t", "on", "off", "maybe",
    "{}", "[]", "{", "[", '"', "'", "\\", '{"a":', '{"a":{}}', '{"a":[1]}', '{"a":NaN}',
    '{"a":1e400}', '[{"ip":"10.20.0.1","port":1e400}]', '{"type":"label","expression":"x"}',
    "[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, "[" * 100,
    "k=v", "k=v,a=b", "=", ",", "k=v=w", "a" * 20000, "é" * 1000,
    "\U0001d518\U0001d52b\U0001d526", "\u202e", "\ufeff",
    "\x00", "\x01\x02", "\r\n", "a\nb", "%00", "%ff", "../../etc/passwd", "a@@b", "@@", "a##b",
    "DEFAULT_GROUP@@fz-a", "<script>", "' OR 1=1 --", "$(id)", "java:1.0.0", "/nacos/v1/ns:429",
    "10.20.0.1", "::1", "fz-a",
]  # fmt: skip

SWITCH_ENTRIES = [
    "batch", "distro", "check", "pushEnabled", "disableAddIP", "sendBeatOnly", "enableStandalone",
    "defaultInstanceEphemeral", "lightBeatEnabled", "autoChangeHealthCheckEnabled",
    "clientBeatInterval", "pushCacheMillis", "defaultCacheMillis", "healthCheckTimes",
    "serviceStatusSynchronizationPeriodMillis", "serverStatusSynchronizationPeriodMillis",
    "distroServerExpiredMillis", "distroThreshold", "pushVersion", "limitedUrlMap",
    "overriddenServerStatus", "masters", "noSuchEntry",
]  # fmt: skip

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN/Infinity on purpose


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
GENERIC = (
    st.sampled_from(ADVERSARIAL)
    | TEXT
    | st.integers(min_value=-(2**100), max_value=2**100).map(str)
    | st.floats().map(repr)
    | JSON_VALUES.map(_dumps)
)
NUMBERS = st.sampled_from(["80", "8848", "1", "65535", "0.5", "10000"]) | GENERIC
BOOLS = st.sampled_from(["true", "false", "True", "False", "yes", "1", "0", ""]) | GENERIC
SERVICES = st.sampled_from(["fz-a", "fz-b", "DEFAULT_GROUP@@fz-a", "G1@@fz-c", "fz-a "]) | GENERIC
# Never a loopback address: the health checker probes persistent instances on 127.0.0.0/8, and
# other engineers' processes listen there.
IPS = st.sampled_from(["10.20.0.1", "10.20.0.2", "::1", "host-a", "10.20.0.1:80"]) | GENERIC

INSTANCE_FIELDS = {
    "ip": IPS,
    "port": JSON_VALUES | st.sampled_from([80, 8080, 1e400, -1, 65536]),
    "weight": JSON_VALUES,
    "cluster": JSON_VALUES | st.just("DEFAULT"),
    "clusterName": JSON_VALUES | st.just("DEFAULT"),
    "metadata": JSON_VALUES,
    "ephemeral": JSON_VALUES,
    "serviceName": SERVICES,
}


@st.composite
def json_object(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> str:
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    return _dumps({name: draw(fields[name]) for name in chosen})


SWITCH_BATCH = json_object(
    {
        name: JSON_VALUES | st.sampled_from([1000, 10**30, 0.5, True, "1.0.0", None])
        for name in Switches.__dataclass_fields__
    }
)

BY_NAME: dict[str, st.SearchStrategy[str]] = {
    "serviceName": SERVICES | SERVICES,
    "dom": SERVICES,
    "groupName": st.sampled_from(["DEFAULT_GROUP", "G1", "g$"]) | GENERIC,
    "namespaceId": st.sampled_from(["", "public", "fz-ns", "a##b", "x" * 200]) | GENERIC,
    "ip": IPS,
    "port": NUMBERS,
    "checkPort": NUMBERS,
    "weight": NUMBERS,
    "protectThreshold": st.sampled_from(["0", "0.5", "1", "1.0000001"]) | GENERIC,
    "pageNo": NUMBERS,
    "pageSize": NUMBERS,
    # Never a usable UDP port: pushes go to the caller's address (loopback), and another
    # engineer's process may listen on any port there.
    "udpPort": st.sampled_from(["0", "", "-1", "65536", "x", "1e400", "NaN", "2147483648"]),
    "clientIP": st.sampled_from(["127.0.0.1", "", "not-an-ip", "::1"]),
    "metadata": st.sampled_from(["k=v", "a=1,b=2"])
    | json_object({"k": JSON_VALUES, "preserved.heart.beat.timeout": JSON_VALUES})
    | GENERIC,
    "beat": json_object(INSTANCE_FIELDS) | GENERIC,
    "instances": st.lists(json_object(INSTANCE_FIELDS), max_size=3).map(
        lambda items: "[" + ",".join(items) + "]"
    )
    | GENERIC,
    "selector": json_object(
        {"type": st.sampled_from(["label", "none", "x"]), "expression": GENERIC}
    )
    | GENERIC,
    "healthChecker": json_object(
        {
            "type": st.sampled_from(["TCP", "HTTP", "MYSQL", "NONE", "x"]) | JSON_VALUES,
            "path": JSON_VALUES,
            "headers": JSON_VALUES,
            "expectedResponseCode": JSON_VALUES | st.sampled_from([200, 99, 600, 1e400]),
            "user": JSON_VALUES,
            "pwd": JSON_VALUES,
            "cmd": JSON_VALUES,
        }
    )
    | GENERIC,
    "entry": st.sampled_from(SWITCH_ENTRIES) | GENERIC,
    "value": SWITCH_BATCH | NUMBERS | BOOLS,
    "username": st.sampled_from(["fzuser1", "fzuser2", "nacos", "a b", ""]) | GENERIC,
    "consistencyType": st.sampled_from(["ephemeral", "persist", ""]) | GENERIC,
    "key": st.sampled_from(["public##DEFAULT_GROUP@@fz-a", "DEFAULT_GROUP@@fz-a", "##"]) | GENERIC,
    "role": st.sampled_from(["ROLE_FZ", "ROLE_ADMIN", "", "a b"]) | GENERIC,
    "resource": st.sampled_from(["fz-ns:*:*", ":*:*", "public:G1:*", "a", "::", "x" * 300])
    | GENERIC,
    "action": st.sampled_from(["r", "w", "rw", "wr", "x", ""]) | GENERIC,
    "customNamespaceId": st.sampled_from(["fz-ns2", "", "a b", "x" * 200, "public"]) | GENERIC,
    "since": NUMBERS,
    "until": NUMBERS,
    "scope": st.sampled_from(["cluster", "local", "x"]) | GENERIC,
}
BOOL_PARAMS = [
    "healthy", "enabled", "enable", "ephemeral", "healthyOnly", "isCheck", "detail", "reset",
    "hasIpCount", "withInstances", "valid", "useInstancePort4Check",
]  # fmt: skip
BY_NAME.update(dict.fromkeys(BOOL_PARAMS, BOOLS))


DEEP = st.sampled_from(
    ["[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, '{"a":' * 20 + "1" + "}" * 20]
)
for _name in ("metadata", "beat", "instances", "selector", "healthChecker", "value"):
    BY_NAME[_name] = BY_NAME[_name] | DEEP

# Plausible values: most parameters of a request are valid, so the hostile one gets as far as
# the code that reads it.
VALID: dict[str, st.SearchStrategy[str]] = {
    "serviceName": st.sampled_from(["fz-a", "fz-b", "G1@@fz-c"]),
    "ip": st.sampled_from(["10.20.0.1", "10.20.0.2"]),
    "port": st.sampled_from(["80", "81"]),
    "pageNo": st.just("1"),
    "pageSize": st.sampled_from(["10", "100"]),
    "clusterName": st.sampled_from(["DEFAULT", "C1"]),
    "checkPort": st.just("80"),
    "useInstancePort4Check": st.just("true"),
    "protectThreshold": st.just("0.5"),
    "beat": st.just('{"ip":"10.20.0.1","port":80,"cluster":"DEFAULT"}'),
    "instances": st.just('[{"ip":"10.20.0.1","port":80}]'),
    "metadata": st.just('{"k":"v"}'),
    "healthChecker": st.just('{"type":"TCP"}'),
    "key": st.just("DEFAULT_GROUP@@fz-a"),
    "username": st.sampled_from(["fzuser1", "fzuser2"]),
    "password": st.just("fz-password-1"),
    "newPassword": st.just("fz-password-2"),
    "role": st.just("ROLE_FZ"),
    "resource": st.just("fz-ns:*:*"),
    "action": st.just("rw"),
    "namespaceName": st.just("fuzz namespace"),
}

# What each route reads, so a request usually carries the whole set (one of them hostile).
CORE_BY_ROUTE: dict[str, list[str]] = {
    "instance": ["serviceName", "ip", "port", "metadata", "weight", "ephemeral", "clusterName"],
    "instance/beat": ["serviceName", "beat"],
    "instance/list": ["serviceName", "clusters", "healthyOnly", "udpPort", "clientIP", "wait"],
    "instance/statuses": ["key"],
    "instance/metadata/batch": ["serviceName", "metadata", "instances", "consistencyType"],
    "service": ["serviceName", "protectThreshold", "metadata", "selector"],
    "service/list": ["pageNo", "pageSize", "selector", "groupName"],
    "service/subscribers": ["serviceName", "pageNo", "pageSize"],
    "service/leader": ["serviceName", "ip", "port", "clusterName"],
    "catalog/instances": ["serviceName", "clusterName", "pageNo", "pageSize", "wait"],
    "events": ["serviceName", "groupName", "namespaceId", "lastEventId"],
    "service/revisions": ["groupName", "namespaceId"],
    "catalog/services": ["pageNo", "pageSize", "serviceNameParam", "withInstances", "hasIpCount"],
    "cluster": [
        "serviceName",
        "clusterName",
        "checkPort",
        "useInstancePort4Check",
        "healthChecker",
    ],
    "health": ["serviceName", "ip", "port", "healthy"],
    "health/instance": ["serviceName", "ip", "port", "healthy"],
    "operator/switches": ["entry", "value"],
    "ops/switches": ["entry", "value"],
    "operator/push/state": ["detail", "reset"],
}
for _route in ("auth/login", "auth/users/login"):
    CORE_BY_ROUTE[_route] = ["username", "password"]
CORE_BY_ROUTE["auth/users"] = ["username", "password", "newPassword", "pageNo", "pageSize"]
CORE_BY_ROUTE["auth/roles"] = ["role", "username", "pageNo", "pageSize", "search"]
CORE_BY_ROUTE["auth/permissions"] = ["role", "resource", "action", "pageNo", "pageSize"]
CORE_BY_ROUTE["console/namespaces"] = [
    "customNamespaceId",
    "namespaceName",
    "namespaceDesc",
    "namespace",
    "namespaceShowName",
    "namespaceId",
    "show",
    "checkNamespaceIdExist",
]
CORE_BY_ROUTE["console/audit"] = ["object", "user", "kind", "since", "until", "scope", "pageNo"]


def _value(name: str) -> st.SearchStrategy[str]:
    valid = VALID.get(name)
    hostile = BY_NAME.get(name, GENERIC)
    return hostile if valid is None else valid | valid | hostile


def _no_guard(value: str) -> str:
    """By construction the fuzz never names the guard namespace (in any parameter)."""
    return value.replace(GUARD, "fz-ns") if GUARD in value else value


# Parameter groups most endpoints need, so that many requests get past "missing parameter".
CORE_GROUPS = [
    [], ["serviceName"], ["serviceName", "ip", "port"], ["serviceName", "ip", "port", "metadata"],
    ["serviceName", "beat"], ["serviceName", "metadata", "instances"], ["pageNo", "pageSize"],
    ["serviceName", "clusterName", "checkPort", "useInstancePort4Check", "healthChecker"],
    ["serviceName", "protectThreshold", "selector", "metadata"], ["entry", "value"],
    ["username", "password"], ["username", "newPassword"], ["key"],
]  # fmt: skip


@st.composite
def fuzz_request(draw: st.DrawFn, methods: dict[str, list[str]]) -> dict[str, Any]:
    """``methods``: what each path answers without a 501, probed on the node; most requests
    use one of them (the rest any method, for the 501 path)."""
    path = draw(st.sampled_from(PATHS))
    route = path.removeprefix(NS).removeprefix("/nacos/v1/")
    by_route = CORE_BY_ROUTE.get(route, [])
    core = draw(st.sampled_from([by_route, by_route, by_route, *CORE_GROUPS]))
    extra = draw(st.lists(st.sampled_from(PARAM_NAMES) | st.text(max_size=6), max_size=6))
    names = list(dict.fromkeys([*core, *extra]))
    params = {_no_guard(n): _no_guard(draw(_value(n), label=n)) for n in names}
    usual = methods.get(path) or METHODS
    return {
        "method": draw(st.sampled_from(usual) | st.sampled_from(usual) | st.sampled_from(METHODS)),
        "path": path,
        "params": params,
        "where": draw(st.sampled_from(["query", "query", "form", "split", "json"])),
        "auth": draw(st.sampled_from(["admin", "admin", "admin", "admin", "none", "garbage"])),
        "agent": draw(
            st.sampled_from(
                ["", "Nacos-Java-Client:v1.4.1", "Nacos-Java-Client:v0.9", "Nacos-Go-Client:v1"]
            )
            | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
        ),
        "tail": draw(st.sampled_from(["", "", "", "&", "&=&==", "%ff%fe=%00", "a&a=1&a=2", "%ZZ"])),
    }


# -- the node, the guard namespace --------------------------------------------------------------


class Sender:
    """One HTTP/1.1 connection to the node (reopened if the node closes it)."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.conn: http.client.HTTPConnection | None = None
        self.statuses: collections.Counter[int] = collections.Counter()
        self.conn_port = 0

    def _port(self, target: str) -> int:
        """The facade's own port for its paths (the main port serves none of them)."""
        if target.startswith("/eureka/"):
            return int(self.node.env["NAMING_EUREKA_PORT"])
        return self.node.port

    def send(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None or self.conn_port != self._port(target):
                self.close()
                self.conn_port = self._port(target)
                self.conn = http.client.HTTPConnection("127.0.0.1", self.conn_port, timeout=30)
            try:
                self.conn.request(method, target, body=body, headers=headers)
                response = self.conn.getresponse()
                if response.getheader("Content-Type", "").startswith("text/event-stream"):
                    # An event stream never ends by itself: its first line, then hang up.
                    data = response.readline()
                    self.close()
                    return response.status, data
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                # A keep-alive connection the server closed between requests: retry once on a
                # fresh one. A second failure is the node failing (a crash, a hang).
                if attempt == 1 or self.node.proc is None or self.node.proc.poll() is not None:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _reset_switches(node: NodeProcess) -> None:
    defaults = {**Switches().to_json(), "overriddenServerStatus": None, "masters": None}
    result = node.api(
        "PUT", "/operator/switches", {"entry": "batch", "value": json.dumps(defaults)}
    )
    assert (result.status, result.text) == (200, "ok"), result.text


GUARD_SERVICES = ["guard-a", "G1@@guard-b", "guard-c"]
LONG_BEATS = {  # no beat thread: the ephemeral guard instances must outlive the fuzz
    "preserved.heart.beat.timeout": "3600000",
    "preserved.ip.delete.timeout": "3600000",
}


def _populate_guard(node: NodeProcess) -> None:
    def ok(path: str, method: str, **params: str) -> None:
        result = node.api(method, path, {"namespaceId": GUARD, **params})
        assert (result.status, result.text) == (200, "ok"), (path, params, result.text)

    ok("/service", "POST", serviceName="guard-a", protectThreshold="0.3", metadata="team=guard",
       selector='{"type":"label","expression":"INSTANCE.metadata.k=v"}')  # fmt: skip
    ok("/cluster", "PUT", serviceName="guard-a", clusterName="C1", checkPort="8080",
       useInstancePort4Check="false", healthChecker='{"type":"HTTP","path":"/ok"}')  # fmt: skip
    for i, service in enumerate(GUARD_SERVICES):
        for port in (80, 81):
            ok("/instance", "POST", serviceName=service, ip=f"10.30.0.{i}", port=str(port),
               metadata=json.dumps({"k": "v", **LONG_BEATS}), weight="2.5")  # fmt: skip
        ok("/instance", "POST", serviceName=service, ip=f"10.31.0.{i}", port="90",
           ephemeral="false", clusterName="C1", metadata="p=1")  # fmt: skip


def guard_snapshot(node: NodeProcess) -> dict[str, str]:
    """Raw response bodies (only the list's timestamp removed): byte-level comparison."""
    out: dict[str, str] = {}
    base = {"namespaceId": GUARD}
    for service in GUARD_SERVICES:
        listed = node.api("GET", "/instance/list", {**base, "serviceName": service}).json()
        listed.pop("lastRefTime")
        out[f"list {service}"] = json.dumps(listed)
        for path, extra in (
            ("/service", {}),
            ("/catalog/service", {}),
            ("/catalog/instances", {"clusterName": "DEFAULT", "pageNo": "1", "pageSize": "50"}),
            ("/catalog/instances", {"clusterName": "C1", "pageNo": "1", "pageSize": "50"}),
        ):
            result = node.api("GET", path, {**base, "serviceName": service, **extra})
            assert result.status == 200, (path, result.text)
            out[f"{path} {service} {extra}"] = result.text
    for path, extra in (
        ("/service/list", {"pageNo": "1", "pageSize": "50"}),
        ("/catalog/services", {"pageNo": "1", "pageSize": "50", "hasIpCount": "true"}),
        ("/service/names", {}),
    ):
        result = node.api("GET", path, {**base, **extra})
        assert result.status == 200, (path, result.text)
        out[path] = result.text
    return out


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = Path(tmp_path_factory.mktemp("fuzz"))
    # No auto-clean: the fuzz creates and empties services at will; the guard must not depend
    # on the clean-up timing either. The fuzz sends wrong passwords for the admin from the same
    # address it logs in from: no lockout here (tests/hostile/test_auth.py covers throttling).
    env = {
        "NAMING_EMPTY_SERVICE_CLEAN": "false",
        "NAMING_LOGIN_MAX_FAILURES": "1000000",
        "NAMING_LOGIN_MAX_ADDRESS_FAILURES": "1000000",
        "NAMING_EUREKA_PORT": str(free_port()),
    }
    with running_node(data, env=env) as started:
        yield started


def _allowed(method: str, status: int, body: bytes) -> bool:
    if status < 500:
        return True
    if status != 501:
        return False
    if method == "HEAD":
        return body == b""  # the same 501, without its body
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return answer.get("status") == 501 and str(answer.get("message", "")).startswith("no such api")


def _send(sender: Sender, node: NodeProcess, req: dict[str, Any]) -> tuple[int, bytes]:
    params: dict[str, str] = req["params"]
    if req["path"].endswith("/auth/users") and params.get("username") == "nacos":
        # Changing (or trying to delete) the admin the fuzz authenticates as would end the
        # run's admin requests; another user's name exercises the same code.
        params = {**params, "username": "fzuser1"}
    query_params, form_params = params, {}
    if req["where"] == "form":
        query_params, form_params = {}, params
    elif req["where"] == "split":
        items = sorted(params.items())
        query_params, form_params = dict(items[::2]), dict(items[1::2])
    headers = {"User-Agent": req["agent"]} if req["agent"] else {}
    body: bytes | None = None
    if req["where"] == "json":
        query_params = {}
        body = json.dumps(params).encode()
        headers["Content-Type"] = "application/json"
    elif form_params:
        body = urllib.parse.urlencode(form_params, quote_via=urllib.parse.quote).encode()
        headers["Content-Type"] = FORM
    if req["auth"] == "admin" and req["path"].startswith("/eureka/"):
        secret = base64.b64encode(f"nacos:{node.admin_password}".encode()).decode()
        headers["Authorization"] = f"Basic {secret}"
    elif req["auth"] == "admin":
        headers["Authorization"] = f"Bearer {node.token()}"
    elif req["auth"] == "garbage":
        headers["Authorization"] = "Bearer eyJhbGciOiJub25lIn0.e30."
    query = urllib.parse.urlencode(query_params, quote_via=urllib.parse.quote)
    tail = req["tail"]
    query = f"{query}&{tail}" if query and tail else query or tail
    target = urllib.parse.quote(req["path"]) + (f"?{query}" if query else "")
    answer = sender.send(req["method"], target, body, headers)
    if req["path"].endswith("/logout"):
        node._token = None  # a logout with the admin token revoked it: log in again next time
    return answer


def _probe_methods(sender: Sender, node: NodeProcess) -> dict[str, list[str]]:
    auth = {"Authorization": f"Bearer {node.token()}"}
    found: dict[str, list[str]] = {}
    for path in PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            # Without parameters every write is refused as incomplete: the probe changes nothing.
            status, _ = sender.send(method, path, None, auth)
            if status not in (405, 501):
                found.setdefault(path, []).append(method)
    node._token = None  # the probe's POST to auth/logout revoked the admin token
    return found


@pytest.mark.slow
def test_fuzz_every_endpoint_no_5xx_and_guard_namespace_untouched(fuzz_node: NodeProcess) -> None:
    node = fuzz_node
    _populate_guard(node)
    guard = guard_snapshot(node)
    sender = Sender(node)
    failures: list[str] = []

    def run(batch: list[dict[str, Any]]) -> None:
        for req in batch:
            status, body = _send(sender, node, req)
            sender.statuses[status] += 1
            switched = req["path"].endswith("/operator/switches") and req["method"] == "PUT"
            if switched and status == 200:
                _reset_switches(node)
            if not _allowed(req["method"], status, body):
                shown = {k: v[:80] for k, v in req["params"].items()}
                failures.append(f"{status} {req['method']} {req['path']} {shown}: {body[:200]!r}")
                raise AssertionError(failures[-1])

    methods = _probe_methods(sender, node)
    fuzz = given(st.lists(fuzz_request(methods), min_size=1, max_size=3))(run)
    fuzz = settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=not FUZZ_SEED,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(fuzz)
    if FUZZ_SEED:
        fuzz = seed(int(FUZZ_SEED))(fuzz)
    try:
        fuzz()
    finally:
        sender.close()
        print(f"fuzz statuses: {dict(sorted(sender.statuses.items()))}")
        _reset_switches(node)

    assert not failures
    assert guard_snapshot(node) == guard
    switches = node.request("GET", NS + "operator/switches")
    json.loads(switches.text, parse_constant=_refuse_constant)  # strict JSON, no NaN/Infinity
    assert node.request("GET", NS + "operator/metrics").json()["status"] == "UP"
    assert sum(sender.statuses.values()) >= FUZZ_EXAMPLES


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def test_the_fuzz_covers_every_route_of_the_url_table() -> None:
    from server.urls import urlpatterns

    routes = {
        "/" + p.pattern._route
        for p in urlpatterns
        if hasattr(p.pattern, "_route") and "<" not in p.pattern._route
    }
    # The one route with a converter is fuzzed through concrete paths (a file, a traversal).
    assert any(p.startswith("/nacos/console/static/") for p in PATHS)
    # Signed peer calls only (an unsigned one is a 401: tests/cluster/test_distro_cluster.py).
    peer_only = {r for r in routes if "/distro/" in r or "report" in r}
    assert routes - peer_only - {"/bench/empty"} <= set(PATHS) | set(AIRLIFT_PATHS)


# -- the airlift facade, on its own port ---------------------------------------------------------

# Concrete forms of every airlift route (server/urls.py: facades/airlift/urls.py), slashed too.
AIRLIFT_PATHS = [
    *(
        p + tail
        for p in (
            "/v1/service",
            "/v1/service/fz-t",
            "/v1/service/fz-t/fz-p",
            "/v1/announcement/static",
            "/v1/announcement/static/1c001650-7841-11e0-a1f0-0800200c9a66",
            "/v1/announcement/static/not-a-uuid",
            "/v1/announcement/fz-node",
            "/v1/announcement/fz-node/fz-t",
            "/v1/announcement/-bad",
        )
        for tail in ("", "/")
    ),
    "/v1/no/such",
]
UUIDS = st.sampled_from(["1c001650-7841-11e0-a1f0-0800200c9a66", "x", ""]) | st.uuids().map(str)
AIRLIFT_SERVICE = json_object(
    {"id": UUIDS | JSON_VALUES, "type": SERVICES | JSON_VALUES, "properties": JSON_VALUES
     | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
     | st.just({"http": "http://10.20.0.1:8080"})}
)  # fmt: skip
AIRLIFT_BODY = (
    st.builds(
        lambda env, pool, services, location: _dumps(
            {"environment": env, "pool": pool, "services": services, "location": location}
        ),
        st.sampled_from(["production", "testing", ""]) | JSON_VALUES,
        st.sampled_from(["general", "fz-p"]) | JSON_VALUES,
        st.lists(AIRLIFT_SERVICE.map(json.loads), max_size=3) | JSON_VALUES,
        st.none() | TEXT,
    )
    | json_object(
        dict.fromkeys(("environment", "pool", "properties"), JSON_VALUES) | {"type": SERVICES}
    )
    | GENERIC
)


@pytest.mark.slow
def test_fuzz_the_airlift_facade_no_5xx(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random bodies, methods and headers on every airlift route: below 500, node UP."""
    env = {"NAMING_AIRLIFT_PORT": str(free_port())}
    with running_node(Path(tmp_path_factory.mktemp("fuzz-airlift")), env=env) as node:
        facade = int(env["NAMING_AIRLIFT_PORT"])
        conn = http.client.HTTPConnection("127.0.0.1", facade, timeout=30)
        failures: list[str] = []

        @given(
            st.sampled_from(AIRLIFT_PATHS),
            st.sampled_from(["GET", "PUT", "POST", "DELETE", "GET", "PUT", "HEAD", "PATCH"]),
            AIRLIFT_BODY,
            st.sampled_from([{}, {"ETag": '"x"'}, {"If-None-Match": "*"}, {"Content-Type": "x"}]),
        )
        @settings(max_examples=max(50, FUZZ_EXAMPLES // 2), derandomize=not FUZZ_SEED,
                  deadline=None, database=None)  # fmt: skip
        def run(path: str, method: str, body: str, headers: dict[str, str]) -> None:
            nonlocal conn
            try:
                conn.request(method, urllib.parse.quote(path), body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()  # a keep-alive connection closed between requests: once more
                conn = http.client.HTTPConnection("127.0.0.1", facade, timeout=30)
                conn.request(method, urllib.parse.quote(path), body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
            if response.status >= 500:
                failures.append(f"{response.status} {method} {path} {body[:200]!r}")
                raise AssertionError(failures[-1])

        try:
            run()
        finally:
            conn.close()
        assert not failures
        assert node.api("GET", "/operator/metrics").json()["status"] == "UP"
