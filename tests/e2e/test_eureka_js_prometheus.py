"""The Eureka facade with two real clients (issue #14): npm's ``eureka-js-client`` 4.5.0 and
Debian's Prometheus 2.42 (``eureka_sd_configs``), next to the Nacos v1 API on the same registry.

eureka-js-client accepts exactly 204 on register (else it never heartbeats nor fetches), exactly
200 on renew and cancel, and fetches ``GET <servicePath>`` as JSON; Prometheus reads
``<server>/apps`` as XML and makes one target per instance (``testkit/eureka_clients.py`` runs
both).
Eureka apps are services of ``public`` / ``DEFAULT_GROUP``, named upper-case.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.eureka_clients import PROMETHEUS, install_eureka_js, js_client, running_prometheus
from testkit.harness import NodeProcess, free_port, running_node, wait_for

pytestmark = pytest.mark.xdist_group("eureka-clients")

# A lease short enough to see renewals keep an instance and a killed client's lease lapse.
SHORT_LEASE = {"renewalIntervalInSecs": 1, "durationInSecs": 5}


@pytest.fixture(scope="module")
def eureka_js() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("eureka-js-client needs Node.js and npm (.ci/run installs nodejs npm)")
    return install_eureka_js()


@pytest.fixture(scope="module")
def enode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"NAMING_EUREKA_PORT": str(free_port())}
    with running_node(tmp_path_factory.mktemp("eureka-clients"), env=env) as node:
        yield node


def name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def eureka_port(node: NodeProcess) -> int:
    return int(node.env["NAMING_EUREKA_PORT"])


def basic(node: NodeProcess) -> dict[str, str]:
    token = base64.b64encode(f"nacos:{node.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def eureka_get(node: NodeProcess, path: str) -> tuple[int, Any]:
    """A JSON read of the facade (``/eureka/apps`` + path), as the admin."""
    answer = node.request(
        "GET",
        "/eureka/apps" + path,
        headers={"Accept": "application/json", **basic(node)},
        base=node.facade_base("eureka"),
    )
    return answer.status, (answer.json() if answer.status == 200 else answer.text)


def nacos_hosts(node: NodeProcess, service: str) -> list[dict[str, Any]]:
    listed = node.api("GET", "/instance/list", {"serviceName": service})
    assert listed.status == 200, listed.text
    return list(listed.json()["hosts"])


def register_nacos(node: NodeProcess, service: str, port: int) -> None:
    """A Nacos v1 ephemeral instance that outlives the test without beats (long timeouts)."""
    metadata = {"preserved.heart.beat.timeout": "300000", "preserved.ip.delete.timeout": "600000"}
    params = {
        "serviceName": service,
        "ip": "127.0.0.1",
        "port": port,
        "metadata": json.dumps(metadata),
    }
    assert node.api("POST", "/instance", params).text == "ok"


def client_options(node: NodeProcess, app: str, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "port": eureka_port(node),
        "service_path": "/eureka/apps/",
        "app": app,
        "host_name": f"{app.lower()}.test",
        "instance_port": free_port(),
        "user": "nacos",
        "password": node.admin_password,
        "heartbeat_ms": 1000,
        "fetch_ms": 1000,
    }
    return {**options, **kwargs}


def test_js_client_registers_heartbeats_sees_a_nacos_service_and_stops(
    eureka_js: Path, enode: NodeProcess
) -> None:
    peer = name("jspeer")  # a Nacos service, lower-case as Nacos users write them
    register_nacos(enode, peer, 7301)
    app = name("jsdemo")
    options = client_options(enode, app, watch=(app.upper(), peer.upper()), lease=SHORT_LEASE)
    with js_client(**options) as client:
        # Registered means the facade answered exactly 204 (the client accepts nothing else).
        client.wait("registered", 30)
        hosts = nacos_hosts(enode, app.upper())
        assert [(h["ip"], h["port"], h["healthy"]) for h in hosts] == [
            ("127.0.0.1", options["instance_port"], True)
        ]

        # Heartbeats: each one is a 200 to the renew (a 404 would make the client re-register).
        client.wait("heartbeat", 15)
        status, shown = eureka_get(enode, f"/{app.upper()}/{options['host_name']}")
        assert status == 200, shown
        lease = shown["instance"]["leaseInfo"]
        assert (lease["renewalIntervalInSecs"], lease["durationInSecs"]) == (1, 5), lease

        # The client's own fetch sees itself and the Nacos-registered service, both UP.
        seen = client.wait(
            "registryUpdated",
            30,
            where=lambda e: bool(e["apps"][app.upper()] and e["apps"][peer.upper()]),
        )["apps"]
        assert [(i["ipAddr"], i["port"], i["status"]) for i in seen[peer.upper()]] == [
            ("127.0.0.1", 7301, "UP")
        ]
        assert [(i["hostName"], i["port"], i["status"]) for i in seen[app.upper()]] == [
            (options["host_name"], options["instance_port"], "UP")
        ]

        # Renewals keep it: well past twice its 5 s lease (which lapses without them, see the
        # killed client below), still there and healthy.
        client.wait("heartbeat", 30, where=lambda e: e["n"] >= 12)
        assert [h["healthy"] for h in nacos_hosts(enode, app.upper())] == [True]

        # stop(): the client's DELETE is answered 200 and the instance is gone for everyone.
        assert client.stop() == 0
        client.wait("deregistered", 5)
    assert nacos_hosts(enode, app.upper()) == []
    status, body = eureka_get(enode, f"/{app.upper()}/{options['host_name']}")
    assert status == 404, body


def test_js_client_on_the_netflix_path_with_its_own_instance_id(
    eureka_js: Path, enode: NodeProcess
) -> None:
    app = name("jsv2")
    options = client_options(
        enode, app, service_path="/eureka/v2/apps/", instance_id=f"{app}-1", watch=(app.upper(),)
    )
    with js_client(**options) as client:
        client.wait("registered", 30)
        client.wait("heartbeat", 15)
        seen = client.wait("registryUpdated", 15, where=lambda e: bool(e["apps"][app.upper()]))
        assert [i["instanceId"] for i in seen["apps"][app.upper()]] == [f"{app}-1"]
        status, body = eureka_get(enode, f"/{app.upper()}/{app}-1")
        assert status == 200 and body["instance"]["app"] == app.upper(), body
        assert client.stop() == 0
        client.wait("deregistered", 5)
    assert nacos_hosts(enode, app.upper()) == []


def test_js_client_with_a_wrong_password_is_not_registered(
    eureka_js: Path, enode: NodeProcess
) -> None:
    app = name("jsdenied")
    with (
        js_client(**client_options(enode, app, password="wrong")) as client,
        pytest.raises(AssertionError, match=r"registration FAILED: status: 40[13]"),
    ):
        client.wait("registered", 30)
    assert nacos_hosts(enode, app.upper()) == []


@pytest.mark.slow
def test_a_killed_js_client_lapses_after_its_lease(eureka_js: Path, enode: NodeProcess) -> None:
    """No stop(): the lease (5 s here) lapses for Nacos readers, then (2 x 5 s) it is removed."""
    app = name("jskilled")
    options = client_options(enode, app, lease=SHORT_LEASE)
    with js_client(**options) as client:
        client.wait("heartbeat", 30)
        client.kill()
    wait_for(
        lambda: [h["healthy"] for h in nacos_hosts(enode, app.upper())] in ([False], []),
        30,
        interval_s=0.5,
        message="the lapsed lease to turn the instance unhealthy",
    )
    wait_for(
        lambda: eureka_get(enode, f"/{app.upper()}/{options['host_name']}")[0] == 404,
        60,
        interval_s=0.5,
        message="the expired instance to leave the Eureka view",
    )
    assert nacos_hosts(enode, app.upper()) == []


def test_prometheus_eureka_sd_discovers_eureka_and_nacos_instances(
    eureka_js: Path, enode: NodeProcess, tmp_path: Path
) -> None:
    if not PROMETHEUS.exists():
        pytest.fail("Debian's prometheus is required (.ci/run installs it)")
    nacos_service = name("promnacos")
    nacos_port = free_port()
    register_nacos(enode, nacos_service, nacos_port)
    app = name("promjs")
    options = client_options(enode, app, host_name="localhost")
    server = f"{enode.facade_base('eureka')}/eureka"
    with (
        js_client(**options) as client,
        running_prometheus(
            tmp_path / "prometheus", server, user="nacos", password=enode.admin_password
        ) as prometheus,
    ):
        client.wait("registered", 30)

        def discovered() -> dict[str, dict[str, str]] | None:
            found = {
                t["discoveredLabels"]["__meta_eureka_app_name"].upper(): t["discoveredLabels"]
                for t in prometheus.targets()
            }
            return found if {app.upper(), nacos_service.upper()} <= found.keys() else None

        labels = wait_for(discovered, 60, interval_s=0.5, message="both targets in prometheus")
        eureka_target = labels[app.upper()]
        assert eureka_target["__address__"] == f"localhost:{options['instance_port']}"
        assert eureka_target["__meta_eureka_app_instance_hostname"] == "localhost"
        assert eureka_target["__meta_eureka_app_instance_status"] == "UP"
        assert eureka_target["__meta_eureka_app_instance_port"] == str(options["instance_port"])
        nacos_target = labels[nacos_service.upper()]
        assert nacos_target["__address__"].endswith(f":{nacos_port}"), nacos_target
        assert nacos_target["__meta_eureka_app_instance_ip_addr"] == "127.0.0.1"
        assert nacos_target["__meta_eureka_app_instance_status"] == "UP"

        # The client's stop() takes its target away at Prometheus's next refresh.
        assert client.stop() == 0
        wait_for(
            lambda: (
                app.upper()
                not in {
                    t["discoveredLabels"]["__meta_eureka_app_name"].upper()
                    for t in prometheus.targets()
                }
            ),
            60,
            interval_s=0.5,
            message="the stopped client's target to leave prometheus",
        )
    assert prometheus.proc is not None and prometheus.proc.poll() is not None
