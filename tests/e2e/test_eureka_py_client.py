"""The Eureka facade with the real ``py-eureka-client`` 0.13.3 (issue #14), auth on (HTTP Basic
from the service URL): register, renew, discovery of another app, a status change, a killed
client expiring after its lease; and one registry: the Nacos v1 SDK lists a Eureka instance, a
Nacos instance shows in ``GET /eureka/apps``. Plus the facade's own 401/403 answers.

Each client runs in its own process (``testkit/eureka_driver.py``), killed at the end: its
heartbeat thread would register it again after ``stop()``. Leases are short (renewal 1 s,
duration 3 s: unhealthy 3 s and removed 6 s after the last renewal) so expiry takes seconds.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from testkit.harness import ROOT, NodeProcess, free_port, running_node, wait_for


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"NAMING_EUREKA_PORT": str(free_port())}
    with running_node(tmp_path_factory.mktemp("eureka"), env=env) as started:
        yield started


def server_url(node: NodeProcess, password: str | None = None) -> str:
    base = node.facade_base("eureka").removeprefix("http://")
    return f"http://nacos:{password or node.admin_password}@{base}/eureka/"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def apps(node: NodeProcess) -> dict[str, list[tuple[str, str]]]:
    """GET /eureka/apps as an admin: app → [(instanceId, status)]."""
    answer = node.request(
        "GET",
        "/eureka/apps",
        base=node.facade_base("eureka"),
        headers=basic("nacos", node.admin_password),
    )
    assert answer.status == 200, answer.text
    root = ElementTree.fromstring(answer.body)
    return {
        app.findtext("name") or "": [
            (i.findtext("instanceId") or "", i.findtext("status") or "")
            for i in app.findall("instance")
        ]
        for app in root.findall("application")
    }


class EurekaProcess:
    def __init__(self, log: Path, server: str, app: str, port: int) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testkit.eureka_driver", server, app, str(port), "1", "3"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.app, self.port = app, port
        self.instance_id = f"127.0.0.1:{app.lower()}:{port}"
        line = self._line(60)
        assert json.loads(line) == {"ready": True}, line

    def _line(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        wait_for(lambda: self.proc.poll() is not None or _readable(self.proc), timeout_s)
        line = self.proc.stdout.readline()
        assert line, f"the eureka client exited: {self.proc.poll()}"
        return line

    def call(self, **command: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line(30))
        assert answer["ok"], answer
        return answer["result"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def _readable(proc: subprocess.Popen[str]) -> bool:
    import select

    assert proc.stdout is not None
    return bool(select.select([proc.stdout], [], [], 0)[0])


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[list[EurekaProcess]]:
    started: list[EurekaProcess] = []
    try:
        yield started
    finally:
        for client in started:
            client.kill()


def test_register_renew_discover_status_and_expiry(
    node: NodeProcess, clients: list[EurekaProcess], tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3).upper()
    alpha, beta = f"ALPHA-{suffix}", f"BETA-{suffix}"
    server = server_url(node)
    a = EurekaProcess(tmp_path / "a.log", server, alpha.lower(), free_port())
    clients.append(a)
    b = EurekaProcess(tmp_path / "b.log", server, beta.lower(), free_port())
    clients.append(b)
    wait_for(lambda: apps(node).get(alpha) == [(a.instance_id, "UP")], 10.0)

    # Renewals keep it healthy well past its 3 s duration (Nacos readers would drop it).
    sdk = node.client()
    time.sleep(5)
    hosts = sdk.list_naming_instance(alpha, healthy_only=True)["hosts"]
    assert [(h["ip"], h["port"], h["instanceId"]) for h in hosts] == [
        ("127.0.0.1", a.port, a.instance_id)
    ]
    assert hosts[0]["metadata"]["driver"] == "py-eureka-client"
    assert hosts[0]["metadata"]["preserved.source"] == "eureka"

    # Discovery of another app, from the client's own registry (full fetch, then deltas).
    wait_for(lambda: b.call(cmd="discover", app=alpha) == [["127.0.0.1", a.port, "UP"]], 20.0)

    # A status change: hidden from Nacos discovery, OUT_OF_SERVICE to Eureka readers.
    a.call(cmd="status", value="OUT_OF_SERVICE")
    assert apps(node)[alpha] == [(a.instance_id, "OUT_OF_SERVICE")]
    assert sdk.list_naming_instance(alpha)["hosts"] == []
    wait_for(
        lambda: b.call(cmd="discover", app=alpha) == [["127.0.0.1", a.port, "OUT_OF_SERVICE"]],
        20.0,
    )

    # A killed client: removed 2 x duration after its last renewal.
    a.kill()
    wait_for(lambda: alpha not in apps(node), 30.0, message="the killed client's lease to expire")
    assert apps(node)[beta] == [(b.instance_id, "UP")]


def test_nacos_instances_show_to_eureka_clients(
    node: NodeProcess, clients: list[EurekaProcess], tmp_path: Path
) -> None:
    svc = f"nacos-svc-{secrets.token_hex(3)}"
    sdk = node.client()
    assert sdk.add_naming_instance(svc, "127.0.0.9", 8081, cluster_name="DEFAULT")
    assert apps(node)[svc.upper()] == [("127.0.0.9:8081", "UP")]
    watcher = EurekaProcess(
        tmp_path / "w.log", server_url(node), f"w-{secrets.token_hex(3)}", free_port()
    )
    clients.append(watcher)
    wait_for(lambda: watcher.call(cmd="discover", app=svc) == [["127.0.0.9", 8081, "UP"]], 20.0)
    sdk.remove_naming_instance(svc, "127.0.0.9", 8081, cluster_name="DEFAULT")


def test_credentials_and_rbac(node: NodeProcess) -> None:
    base = node.facade_base("eureka")
    body = json.dumps(
        {
            "instance": {
                "instanceId": "i1",
                "hostName": "h",
                "app": "GUARDED",
                "ipAddr": "127.0.0.1",
                "port": {"$": 9000, "@enabled": "true"},
                "dataCenterInfo": {"@class": "x", "name": "MyOwn"},
            }
        }
    ).encode()
    json_type = {"Content-Type": "application/json"}
    none = node.request("POST", "/eureka/apps/GUARDED", body=body, headers=json_type, base=base)
    assert none.status == 401 and "Basic" in none.headers.get("WWW-Authenticate", "")
    assert node.request("GET", "/eureka/apps", base=base).status == 401
    wrong = node.request(
        "POST",
        "/eureka/apps/GUARDED",
        body=body,
        headers={**json_type, **basic("nacos", "bad")},
        base=base,
    )
    assert wrong.status == 401
    node.create_user("eureka-reader", "reader-pw", grants=((":*:*", "r"),))
    reader = basic("eureka-reader", "reader-pw")
    denied = node.request(
        "POST", "/eureka/apps/GUARDED", body=body, headers={**json_type, **reader}, base=base
    )
    assert denied.status == 403
    assert node.request("GET", "/eureka/apps", headers=reader, base=base).status == 200
    assert "GUARDED" not in apps(node)
    admin = basic("nacos", node.admin_password)
    created = node.request(
        "POST", "/eureka/apps/GUARDED", body=body, headers={**json_type, **admin}, base=base
    )
    assert created.status == 204
    gone = node.request("DELETE", "/eureka/apps/GUARDED/i1", headers=admin, base=base)
    assert gone.status == 200
