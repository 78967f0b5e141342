"""Roles and permissions through the real clients (issue #10 acceptance): the Python SDK (v1
``nacos.NacosClient``) and the Node SDK (npm ``nacos``), each logged in as a non-admin user
working in one namespace.

Users (each with a role of its own): ``reader`` may read namespace A, ``writer`` may read and
write A, ``grouped`` may read and write group GRP of A only. Nobody but the admin has B.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nacos
import pytest
from nacos.exception import NacosException

from testkit.harness import NodeProcess
from tests.e2e.test_node_sdk import DRIVER_DIR, node_sdk  # noqa: F401  (a fixture)

PASSWORD = "rbac-pass-1"


@dataclass(frozen=True)
class World:
    node: NodeProcess
    ns_a: str
    ns_b: str
    reader: str
    writer: str
    grouped: str


@pytest.fixture(scope="module")
def world(node: NodeProcess) -> Iterator[World]:
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"rbac-a-{tag}", f"rbac-b-{tag}"
    names = {k: f"{k}-{tag}" for k in ("reader", "writer", "grouped")}
    node.create_user(names["reader"], PASSWORD, ((f"{ns_a}:*:*", "r"),))
    node.create_user(names["writer"], PASSWORD, ((f"{ns_a}:*:*", "rw"),))
    node.create_user(names["grouped"], PASSWORD, ((f"{ns_a}:GRP:*", "rw"),))
    yield World(node, ns_a, ns_b, names["reader"], names["writer"], names["grouped"])


def client(world: World, user: str, namespace: str) -> nacos.NacosClient:
    return nacos.NacosClient(
        world.node.address, namespace=namespace, username=user, password=PASSWORD
    )


def admin_register(world: World, namespace: str, svc: str, ip: str = "10.1.0.1") -> None:
    done = world.node.api(
        "POST", "/instance", {"serviceName": svc, "ip": ip, "port": 80, "namespaceId": namespace}
    )
    assert done.text == "ok", done.text


def as_user(world: World, user: str, method: str, path: str, **params: str) -> tuple[int, str]:
    """A raw v1 call with the user's credentials (what the Node SDK sends on every request)."""
    result = world.node.request(
        method, "/nacos/v1/ns" + path, {**params, "username": user, "password": PASSWORD}
    )
    return result.status, result.text


REFUSED = (403, "authorization failed!")


# -- Python SDK -------------------------------------------------------------------------------


def test_python_reader_lists_in_a_but_is_refused_registering(world: World, svc: str) -> None:
    admin_register(world, world.ns_a, svc)
    reader = client(world, world.reader, world.ns_a)
    hosts = reader.list_naming_instance(svc)["hosts"]
    assert [h["ip"] for h in hosts] == ["10.1.0.1"]
    with pytest.raises(NacosException, match="Insufficient privilege"):
        reader.add_naming_instance(svc, "10.1.0.2", 80, cluster_name="DEFAULT")
    params = {"serviceName": svc, "ip": "10.1.0.2", "port": "80", "namespaceId": world.ns_a}
    assert as_user(world, world.reader, "POST", "/instance", **params) == REFUSED
    assert (
        len(
            world.node.api(
                "GET", "/instance/list", {"serviceName": svc, "namespaceId": world.ns_a}
            ).json()["hosts"]
        )
        == 1
    )


def test_python_writer_registers_in_a_and_has_no_access_to_b(world: World, svc: str) -> None:
    writer = client(world, world.writer, world.ns_a)
    assert writer.add_naming_instance(svc, "10.2.0.1", 80, cluster_name="DEFAULT")
    assert [h["ip"] for h in writer.list_naming_instance(svc)["hosts"]] == ["10.2.0.1"]
    assert writer.remove_naming_instance(svc, "10.2.0.1", 80, cluster_name="DEFAULT")

    admin_register(world, world.ns_b, svc)
    in_b = client(world, world.writer, world.ns_b)
    with pytest.raises(NacosException, match="Insufficient privilege"):
        in_b.list_naming_instance(svc)
    with pytest.raises(NacosException, match="Insufficient privilege"):
        in_b.add_naming_instance(svc, "10.2.0.2", 80, cluster_name="DEFAULT")
    assert (
        as_user(
            world,
            world.writer,
            "GET",
            "/service/list",
            pageNo="1",
            pageSize="10",
            namespaceId=world.ns_b,
        )
        == REFUSED
    )
    # Public is a namespace like any other: no rule on it, no access.
    assert as_user(world, world.writer, "GET", "/instance/list", serviceName=svc) == REFUSED


def test_python_group_scoped_rule(world: World, svc: str) -> None:
    grouped = client(world, world.grouped, world.ns_a)
    assert grouped.add_naming_instance(
        svc, "10.3.0.1", 80, cluster_name="DEFAULT", group_name="GRP"
    )
    listed = grouped.list_naming_instance(svc, group_name="GRP")["hosts"]
    assert [h["ip"] for h in listed] == ["10.3.0.1"]
    with pytest.raises(NacosException, match="Insufficient privilege"):
        grouped.add_naming_instance(svc, "10.3.0.2", 80, cluster_name="DEFAULT")
    ns = {"namespaceId": world.ns_a}
    # Nacos's model: the namespace's service list is "<ns>:*:naming/*", which a rule on one
    # group does not cover, whatever stray serviceName comes along.
    for path in ("/service/list", "/catalog/services"):
        assert (
            as_user(
                world,
                world.grouped,
                "GET",
                path,
                pageNo="1",
                pageSize="10",
                serviceName=svc,
                groupName="GRP",
                **ns,
            )
            == REFUSED
        ), path
    # Naming an allowed group in groupName does not reach another group's grouped name.
    assert (
        as_user(
            world,
            world.grouped,
            "POST",
            "/instance",
            serviceName=f"OTHER@@{svc}",
            groupName="GRP",
            ip="10.3.0.3",
            port="80",
            **ns,
        )
        == REFUSED
    )
    # A beat naming its service only in the beat JSON is checked against that service: the
    # allowed group gets past authorization (then the 400 for the missing serviceName, as in
    # Nacos); another group is refused.
    beat = {"ip": "10.3.0.1", "port": 80, "cluster": "DEFAULT"}
    allowed = as_user(
        world,
        world.grouped,
        "PUT",
        "/instance/beat",
        beat=json.dumps({**beat, "serviceName": f"GRP@@{svc}"}),
        **ns,
    )
    assert allowed[0] == 400 and "serviceName" in allowed[1], allowed
    assert (
        as_user(
            world,
            world.grouped,
            "PUT",
            "/instance/beat",
            beat=json.dumps({**beat, "serviceName": f"DEFAULT_GROUP@@{svc}"}),
            **ns,
        )
        == REFUSED
    )
    status, _ = as_user(
        world, world.grouped, "GET", "/instance/statuses", key=f"{world.ns_a}##GRP@@{svc}"
    )
    assert status == 200
    assert (
        as_user(
            world,
            world.grouped,
            "GET",
            "/instance/statuses",
            key=f"{world.ns_a}##DEFAULT_GROUP@@{svc}",
        )
        == REFUSED
    )


def test_service_names_across_namespaces_shows_only_readable_ones(world: World, svc: str) -> None:
    admin_register(world, world.ns_a, svc)
    admin_register(world, world.ns_b, svc)
    status, body = as_user(world, world.reader, "GET", "/service/names")
    assert status == 200, body
    assert set(json.loads(body)["services"]) == {world.ns_a}
    assert as_user(world, world.reader, "GET", "/service/names", namespaceId=world.ns_b) == REFUSED


def test_python_permission_revoked_is_refused_within_two_seconds(world: World, svc: str) -> None:
    node = world.node
    user = f"revoked-{secrets.token_hex(3)}"
    rule = {"role": f"ROLE_{user}", "resource": f"{world.ns_a}:*:*", "action": "rw"}
    node.create_user(user, PASSWORD, ((rule["resource"], rule["action"]),))
    sdk = client(world, user, world.ns_a)
    assert sdk.add_naming_instance(svc, "10.4.0.1", 80, cluster_name="DEFAULT")

    removed = node.admin_call("DELETE", "/permissions", rule)
    assert removed.status == 200, removed.text
    started = time.monotonic()
    while True:  # the same client, with its token from before the change
        try:
            sdk.add_naming_instance(svc, "10.4.0.2", 80, cluster_name="DEFAULT")
        except NacosException as refused:
            assert "Insufficient privilege" in str(refused)
            break
        assert time.monotonic() - started < 2.0, "still allowed 2 s after the revocation"
        time.sleep(0.05)

    granted = node.admin_call("POST", "/permissions", rule)
    assert granted.status == 200, granted.text
    started = time.monotonic()
    while True:
        try:
            assert sdk.add_naming_instance(svc, "10.4.0.3", 80, cluster_name="DEFAULT")
            break
        except NacosException:
            assert time.monotonic() - started < 2.0, "still refused 2 s after the grant"
            time.sleep(0.05)


# -- Node SDK ---------------------------------------------------------------------------------


def node_calls(world: World, user: str, namespace: str, calls: list[dict[str, Any]]) -> list[Any]:
    """Runs the calls in one Node SDK client; one result line per call."""
    done = subprocess.run(
        [
            "node",
            str(DRIVER_DIR / "rbac.js"),
            world.node.address,
            user,
            PASSWORD,
            namespace,
            json.dumps(calls),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(lines) == len(calls), (done.stdout, done.stderr)
    return lines


def refused(line: dict[str, Any]) -> bool:
    return not line["ok"] and line["status"] == 403 and "authorization failed!" in line["message"]


@pytest.mark.xdist_group("node-sdk")
@pytest.mark.usefixtures("node_sdk")
def test_node_sdk_read_write_and_other_namespace(world: World, svc: str) -> None:
    admin_register(world, world.ns_a, svc, ip="10.5.0.1")
    register = {"op": "register", "service": svc, "ip": "10.5.0.2"}
    listing = {"op": "list", "service": svc}
    services = {"op": "services"}

    read, write, services_listed = node_calls(
        world, world.reader, world.ns_a, [listing, register, services]
    )
    assert [h["ip"] for h in read["result"]] == ["10.5.0.1"]
    assert refused(write), write
    assert services_listed["ok"] and svc in services_listed["result"]["data"]

    wrote, read = node_calls(world, world.writer, world.ns_a, [register, listing])
    assert wrote["ok"], wrote
    assert sorted(h["ip"] for h in read["result"]) == ["10.5.0.1", "10.5.0.2"]

    lines = node_calls(world, world.writer, world.ns_b, [listing, register, services])
    assert all(refused(line) for line in lines), lines


@pytest.mark.xdist_group("node-sdk")
@pytest.mark.usefixtures("node_sdk")
def test_node_sdk_group_scoped_rule(world: World, svc: str) -> None:
    in_group, outside, services, listed = node_calls(
        world,
        world.grouped,
        world.ns_a,
        [
            {"op": "register", "service": svc, "group": "GRP", "ip": "10.6.0.1"},
            {"op": "register", "service": svc, "ip": "10.6.0.2"},
            {"op": "services", "group": "GRP"},
            {"op": "list", "service": svc, "group": "GRP"},
        ],
    )
    assert in_group["ok"], in_group
    assert refused(outside), outside
    assert refused(services), services  # a group rule cannot list the namespace (Nacos)
    assert [h["ip"] for h in listed["result"]] == ["10.6.0.1"]
