"""The Eureka facade on a 3-member cluster (issue #14): a registration through one member is
served by the others; renewals through any member reach the service's Distro owner (forwarded
as the v1 edge forwards beats), so the lease holds; once they stop, the lease expires on every
member."""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from pathlib import Path
from xml.etree import ElementTree

from testkit.harness import NodeProcess, distro_status, free_port, running_cluster, wait_for

APPS = 6  # enough that most apps are owned by a member other than the one written to


def basic(node: NodeProcess) -> dict[str, str]:
    token = base64.b64encode(f"nacos:{node.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def registration(app: str, port: int) -> bytes:
    return json.dumps(
        {
            "instance": {
                "instanceId": f"{app.lower()}-1",
                "hostName": "127.0.0.1",
                "app": app,
                "ipAddr": "127.0.0.1",
                "status": "UP",
                "port": {"$": port, "@enabled": "true"},
                "dataCenterInfo": {"@class": "x", "name": "MyOwn"},
                "leaseInfo": {"renewalIntervalInSecs": 1, "durationInSecs": 3},
            }
        }
    ).encode()


def shown(node: NodeProcess) -> dict[str, str]:
    """App → status of its one instance, as this member's facade answers."""
    answer = node.request(
        "GET", "/eureka/v2/apps/", headers=basic(node), base=node.facade_base("eureka")
    )
    assert answer.status == 200, answer.text
    root = ElementTree.fromstring(answer.body)
    return {
        a.findtext("name") or "": a.findtext("instance/status") or ""
        for a in root.findall("application")
    }


def test_a_registration_through_one_member_is_served_by_the_others(tmp_path: Path) -> None:
    ports = {}

    def eureka_port(i: int) -> dict[str, str]:
        ports[i] = free_port()
        return {"NAMING_EUREKA_PORT": str(ports[i])}

    suffix = secrets.token_hex(3).upper()
    names = [f"APP{n}-{suffix}" for n in range(APPS)]
    with running_cluster(tmp_path, 3, node_env=eureka_port) as nodes:
        first = nodes[0]
        for n, app in enumerate(names):
            answer = first.request(
                "POST",
                f"/eureka/apps/{app}",
                body=registration(app, 9000 + n),
                headers={"Content-Type": "application/json", **basic(first)},
                base=first.facade_base("eureka"),
            )
            assert answer.status == 204, answer.text
        want = dict.fromkeys(names, "UP")

        def serves(node: NodeProcess) -> bool:
            return {k: v for k, v in shown(node).items() if k in want} == want

        def expired(node: NodeProcess) -> bool:
            return not set(shown(node)) & set(names)

        for node in nodes:
            wait_for(functools.partial(serves, node), 15.0, message=f"{node.address} serves")
        # Renewals through every member in turn, for twice the lease: the leases hold.
        deadline = time.monotonic() + 7
        turn = 0
        while time.monotonic() < deadline:
            for app in names:
                node = nodes[turn % 3]
                turn += 1
                renewed = node.request(
                    "PUT",
                    f"/eureka/apps/{app}/{app.lower()}-1",
                    headers=basic(node),
                    base=node.facade_base("eureka"),
                )
                assert renewed.status == 200, renewed.text
            time.sleep(0.5)
        for node in nodes:
            listed = node.api(
                "GET", "/instance/list", {"serviceName": names[0], "healthyOnly": "true"}
            )
            assert [h["instanceId"] for h in listed.json()["hosts"]] == [f"{names[0].lower()}-1"]
            assert {k: v for k, v in shown(node).items() if k in want} == want
        # The writes to members that do not own the app went to its owner.
        assert sum(distro_status(n)["forwarded"] for n in nodes) > 0
        # No more renewals: removed at 2 x duration on every member.
        for node in nodes:
            wait_for(functools.partial(expired, node), 30.0, message=f"{node.address} expires")
