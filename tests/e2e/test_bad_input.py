"""Malformed input: always a 4xx with a message in the Nacos shape; stored data untouched.

Each case runs against a real node holding a reference service (ephemeral and persistent
instances plus service meta); after every bad request the reference must read back identically
and the node must still report UP.
"""

from __future__ import annotations

import json

import pytest

from testkit.harness import NodeProcess

REF = "bad-input-reference"

CASES: list[tuple[str, str, str, dict[str, str]]] = [
    # (case id, method, path, params)
    ("register-no-service", "POST", "/instance", {"ip": "10.0.0.1", "port": "80"}),
    ("register-no-ip", "POST", "/instance", {"serviceName": REF, "port": "80"}),
    ("register-no-port", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1"}),
    ("port-not-number", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1", "port": "abc"}),
    ("port-zero", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1", "port": "0"}),
    ("port-too-big", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1", "port": "70000"}),
    ("port-negative", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1", "port": "-1"}),
    ("port-fraction", "POST", "/instance", {"serviceName": REF, "ip": "10.0.0.1", "port": "1.5"}),
    (
        "weight-not-number",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.0.0.1", "port": "80", "weight": "heavy"},
    ),
    (
        "weight-negative",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.0.0.1", "port": "80", "weight": "-1"},
    ),
    (
        "weight-too-big",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.0.0.1", "port": "80", "weight": "10001"},
    ),
    (
        "weight-nan",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.0.0.1", "port": "80", "weight": "NaN"},
    ),
    (
        "weight-inf",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "10.0.0.1", "port": "80", "weight": "Infinity"},
    ),
    (
        "service-bad-chars",
        "POST",
        "/instance",
        {"serviceName": "bad name!", "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "service-empty-group",
        "POST",
        "/instance",
        {"serviceName": "@@x", "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "service-empty-name",
        "POST",
        "/instance",
        {"serviceName": "G@@", "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "service-too-long",
        "POST",
        "/instance",
        {"serviceName": "s" * 600, "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "group-bad-chars",
        "POST",
        "/instance",
        {"serviceName": REF, "groupName": "g$", "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "namespace-bad-chars",
        "POST",
        "/instance",
        {"serviceName": REF, "namespaceId": "a##b", "ip": "1.1.1.1", "port": "80"},
    ),
    (
        "cluster-underscore",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "1.1.1.1", "port": "80", "clusterName": "bad_cluster"},
    ),
    (
        "ip-with-spaces",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "1.1.1.1; rm -rf", "port": "80"},
    ),
    ("ip-too-long", "POST", "/instance", {"serviceName": REF, "ip": "1" * 300, "port": "80"}),
    (
        "metadata-garbage",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "1.1.1.1", "port": "80", "metadata": "not-json-and-no-equals"},
    ),
    (
        "metadata-nested",
        "POST",
        "/instance",
        {"serviceName": REF, "ip": "1.1.1.1", "port": "80", "metadata": '{"a":{"b":1}}'},
    ),
    (
        "metadata-oversized",
        "POST",
        "/instance",
        {
            "serviceName": REF,
            "ip": "1.1.1.1",
            "port": "80",
            "metadata": json.dumps({"k": "v" * 20000}),
        },
    ),
    (
        "metadata-too-many",
        "POST",
        "/instance",
        {
            "serviceName": REF,
            "ip": "1.1.1.1",
            "port": "80",
            "metadata": json.dumps({f"k{i}": "v" for i in range(200)}),
        },
    ),
    (
        "update-bad-weight",
        "PUT",
        "/instance",
        {"serviceName": REF, "ip": "10.1.0.1", "port": "80", "weight": "x"},
    ),
    (
        "patch-bad-weight",
        "PATCH",
        "/instance",
        {"serviceName": REF, "ip": "10.1.0.1", "port": "80", "weight": "20000"},
    ),
    (
        "deregister-bad-port",
        "DELETE",
        "/instance",
        {"serviceName": REF, "ip": "10.1.0.1", "port": "x"},
    ),
    ("beat-bad-json", "PUT", "/instance/beat", {"serviceName": REF, "beat": "{"}),
    ("beat-json-array", "PUT", "/instance/beat", {"serviceName": REF, "beat": "[]"}),
    (
        "beat-bad-port",
        "PUT",
        "/instance/beat",
        {"serviceName": REF, "beat": '{"ip":"10.1.0.1","port":"x"}'},
    ),
    (
        "beat-bad-weight",
        "PUT",
        "/instance/beat",
        {"serviceName": REF, "beat": '{"ip":"10.1.0.1","port":80,"weight":99999}'},
    ),
    ("list-no-service", "GET", "/instance/list", {}),
    ("list-bad-udp-port", "GET", "/instance/list", {"serviceName": REF, "udpPort": "x"}),
    ("get-bad-port", "GET", "/instance", {"serviceName": REF, "ip": "10.1.0.1", "port": "p"}),
    ("service-put-no-threshold", "PUT", "/service", {"serviceName": REF}),
    (
        "service-put-threshold-range",
        "PUT",
        "/service",
        {"serviceName": REF, "protectThreshold": "2"},
    ),
    (
        "service-put-threshold-nan",
        "PUT",
        "/service",
        {"serviceName": REF, "protectThreshold": "abc"},
    ),
    (
        "service-post-bad-selector",
        "POST",
        "/service",
        {"serviceName": "newsvc", "selector": "notjson"},
    ),
    (
        "service-post-selector-type",
        "POST",
        "/service",
        {"serviceName": "newsvc", "selector": '{"type":"cmdb"}'},
    ),
    ("service-post-existing", "POST", "/service", {"serviceName": REF}),
    ("service-delete-missing", "DELETE", "/service", {"serviceName": "never-existed"}),
    ("service-list-no-page", "GET", "/service/list", {}),
    ("service-list-page-zero", "GET", "/service/list", {"pageNo": "0", "pageSize": "10"}),
    ("service-list-huge-page", "GET", "/service/list", {"pageNo": "1", "pageSize": "100000"}),
    (
        "cluster-no-checker",
        "PUT",
        "/cluster",
        {
            "serviceName": REF,
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
        },
    ),
    (
        "cluster-bad-checker",
        "PUT",
        "/cluster",
        {
            "serviceName": REF,
            "clusterName": "DEFAULT",
            "checkPort": "80",
            "useInstancePort4Check": "true",
            "healthChecker": "{bad",
        },
    ),
    (
        "cluster-bad-port",
        "PUT",
        "/cluster",
        {
            "serviceName": REF,
            "clusterName": "DEFAULT",
            "checkPort": "x",
            "useInstancePort4Check": "true",
            "healthChecker": '{"type":"TCP"}',
        },
    ),
    (
        "batch-bad-instances",
        "PUT",
        "/instance/metadata/batch",
        {"serviceName": REF, "instances": "notjson", "metadata": '{"a":"b"}'},
    ),
    (
        "batch-instances-object",
        "PUT",
        "/instance/metadata/batch",
        {"serviceName": REF, "instances": '{"ip":"1"}', "metadata": '{"a":"b"}'},
    ),
    (
        "batch-no-metadata",
        "PUT",
        "/instance/metadata/batch",
        {"serviceName": REF, "consistencyType": "ephemeral"},
    ),
    (
        "switch-not-number",
        "PUT",
        "/operator/switches",
        {"entry": "clientBeatInterval", "value": "abc"},
    ),
    (
        "switch-below-minimum",
        "PUT",
        "/operator/switches",
        {"entry": "defaultCacheMillis", "value": "10"},
    ),
    ("switch-no-value", "PUT", "/operator/switches", {"entry": "distroThreshold"}),
    ("health-no-flag", "PUT", "/health", {"serviceName": REF, "ip": "10.1.0.1", "port": "80"}),
    (
        "health-checker-active",
        "PUT",
        "/health",
        {"serviceName": REF, "ip": "10.1.0.1", "port": "80", "healthy": "false"},
    ),
    ("statuses-no-group", "GET", "/instance/statuses", {"key": "public##nogroup"}),
    (
        "catalog-instances-no-cluster",
        "GET",
        "/catalog/instances",
        {"serviceName": REF, "pageNo": "1", "pageSize": "10"},
    ),
]


@pytest.fixture(scope="module")
def reference(node: NodeProcess) -> dict:
    client = node.client()
    assert client.add_naming_instance(
        REF, "10.1.0.1", 80, cluster_name="DEFAULT", metadata={"k": "v"}
    )
    assert client.add_naming_instance(REF, "127.0.0.1", 9, cluster_name="DEFAULT", ephemeral=False)
    assert (
        node.api(
            "PUT",
            "/service",
            {"serviceName": REF, "protectThreshold": "0.1", "metadata": "team=core"},
        ).text
        == "ok"
    )
    return snapshot(node)


def snapshot(node: NodeProcess) -> dict:
    hosts = node.api("GET", "/instance/list", {"serviceName": REF}).json()["hosts"]
    service = node.api("GET", "/service", {"serviceName": REF}).json()
    switches = node.request("GET", "/nacos/v1/ns/operator/switches").json()
    return {"hosts": hosts, "service": service, "switches": switches}


@pytest.mark.parametrize(
    ("method", "path", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_request_is_4xx_with_message_and_changes_nothing(
    node: NodeProcess, reference: dict, method: str, path: str, params: dict[str, str]
):
    result = node.api(method, path, params)

    assert 400 <= result.status < 500, (result.status, result.text)
    assert result.text.startswith("caused: ") and len(result.text) > len("caused: ;")
    assert snapshot(node) == reference
    assert node.request("GET", "/nacos/v1/ns/operator/metrics").json()["status"] == "UP"


def test_oversized_body_is_413_and_changes_nothing(node: NodeProcess, reference: dict):
    body = ("metadata=" + "x" * (2 * 1024 * 1024)).encode()
    result = node.request(
        "POST",
        "/nacos/v1/ns/instance",
        {"serviceName": REF, "ip": "10.1.0.2", "port": "80", "accessToken": node.token()},
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status == 413
    assert snapshot(node) == reference


def test_form_body_parameters_count_for_put(node: NodeProcess, reference: dict):
    """The Java client sends the beat as a form body; a PUT form must be read too."""
    beat = json.dumps({"ip": "10.1.0.1", "port": 80, "cluster": "DEFAULT"})
    from urllib.parse import urlencode

    result = node.request(
        "PUT",
        "/nacos/v1/ns/instance/beat",
        {"accessToken": node.token()},
        body=urlencode({"serviceName": REF, "beat": beat}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status == 200 and result.json()["code"] == 10200
