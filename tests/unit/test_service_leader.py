"""Service leaders through the core and the v1 edge (issue #13, item 4): ``service/leader``
answers the oldest healthy instance, a pin (replicated in the service meta) overrides it while
its instance serves, and bad input is a 4xx in the Nacos shape."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.auth import Authenticator, HashingPool, UserDirectory
from lib.errors import NotFound
from naming import commands as s
from naming.changes import Change, PinLeader, UnpinLeader
from naming.domain import Instance, ServiceMeta, ServiceName
from naming.feed import EventKind
from node import runtime
from node.runtime import NodeRuntime
from testkit.harness import wait_for

SVC = ServiceName("public", "DEFAULT_GROUP@@s")
LEADER = "/nacos/v1/ns/service/leader"


def register(node: NodeRuntime, n: int, cluster: str = "DEFAULT", **fields: Any) -> None:
    inst = Instance(f"10.0.0.{n}", 80, cluster=cluster, **fields)
    node.operations.register_instance(s.RegisterInstance(SVC, inst))


def set_health(node: NodeRuntime, n: int, healthy: bool) -> None:
    key = Instance(f"10.0.0.{n}", 80).key
    node.operations.patch_instance(
        s.PatchInstanceCommand(SVC, key, None, healthy, None, None, None)
    )


def led_by(node: NodeRuntime, cluster: str | None = None) -> tuple[str, bool, str]:
    found = node.operations.leader(SVC, cluster)
    return found.instance.ip, found.pinned, found.scope


# -- the changes ---------------------------------------------------------------------------------


def test_pin_and_unpin_are_deterministic_meta_changes() -> None:
    created = PinLeader("", "10.0.0.1:80").apply(None)
    assert isinstance(created, ServiceMeta) and dict(created.pinned_leaders) == {"": "10.0.0.1:80"}
    assert PinLeader("", "10.0.0.1:80").apply(created) is created
    both = PinLeader("c1", "10.0.0.2:80").apply(created)
    assert isinstance(both, ServiceMeta) and both.protect_threshold == created.protect_threshold
    assert dict(both.pinned_leaders) == {"": "10.0.0.1:80", "c1": "10.0.0.2:80"}
    after = UnpinLeader("").apply(both)
    assert isinstance(after, ServiceMeta) and dict(after.pinned_leaders) == {"c1": "10.0.0.2:80"}
    assert UnpinLeader("").apply(after) is after
    assert UnpinLeader("").apply(None) is None
    for change in (PinLeader("c1", "10.0.0.2:80"), UnpinLeader("c1")):
        assert Change.decode(change.encode()) == change


# -- the core ------------------------------------------------------------------------------------


def test_the_oldest_healthy_instance_leads_and_a_pin_overrides_it(node: NodeRuntime) -> None:
    for n in (1, 2, 3):
        register(node, n)
    assert led_by(node) == ("10.0.0.1", False, "")
    assert node.operations.find_service(SVC).meta is None  # ephemeral only so far
    node.operations.pin_leader(s.PinLeaderCommand(SVC, None, "10.0.0.3", 80))
    meta = node.operations.find_service(SVC).meta
    assert meta is not None and dict(meta.pinned_leaders) == {"": "10.0.0.3:80"}
    assert led_by(node) == ("10.0.0.3", True, "")
    register(node, 4)
    node.operations.deregister_instance(s.InstanceRef(SVC, Instance("10.0.0.1", 80).key, True))
    assert led_by(node) == ("10.0.0.3", True, "")
    node.operations.unpin_leader(s.UnpinLeaderCommand(SVC, None))
    assert led_by(node) == ("10.0.0.2", False, "")


def test_a_pin_and_an_unpin_are_leader_events_on_the_feed(node: NodeRuntime) -> None:
    register(node, 1)
    register(node, 2)

    def service_leaders(after: int) -> list[str | None]:
        return [
            e.instance.ip if e.instance else None
            for e in node.feed.since(after)
            if e.kind is EventKind.LEADER and e.scope == ""
        ]

    wait_for(lambda: service_leaders(0) == ["10.0.0.1"], 5.0, 0.01)
    mark = node.feed.last_index
    node.operations.pin_leader(s.PinLeaderCommand(SVC, None, "10.0.0.2", 80))
    node.operations.unpin_leader(s.UnpinLeaderCommand(SVC, None))
    wait_for(lambda: service_leaders(mark) == ["10.0.0.2", "10.0.0.1"], 5.0, 0.01)


def test_a_cluster_has_a_leader_and_a_pin_of_its_own(node: NodeRuntime) -> None:
    register(node, 1, "a")
    register(node, 2, "b")
    register(node, 3, "b")
    assert led_by(node, "b") == ("10.0.0.2", False, "b")
    node.operations.pin_leader(s.PinLeaderCommand(SVC, "b", "10.0.0.3", 80))
    assert led_by(node, "b") == ("10.0.0.3", True, "b")
    assert led_by(node) == ("10.0.0.1", False, "")  # the service's leader is not pinned
    with pytest.raises(NotFound, match=r"no instance 10\.0\.0\.3:80 in cluster a"):
        node.operations.pin_leader(s.PinLeaderCommand(SVC, "a", "10.0.0.3", 80))
    with pytest.raises(NotFound, match="no cluster z"):
        node.operations.pin_leader(s.PinLeaderCommand(SVC, "z", "10.0.0.3", 80))
    with pytest.raises(NotFound, match="no cluster z"):
        node.operations.leader(SVC, "z")


def test_pins_need_a_known_service_and_instance_and_unpin_is_idempotent(node: NodeRuntime) -> None:
    with pytest.raises(NotFound):
        node.operations.pin_leader(s.PinLeaderCommand(SVC, None, "10.0.0.1", 80))
    register(node, 1)
    with pytest.raises(NotFound, match=r"no instance 10\.0\.0\.1:81"):
        node.operations.pin_leader(s.PinLeaderCommand(SVC, None, "10.0.0.1", 81))
    revision = node.operations.find_service(SVC).revision
    node.operations.unpin_leader(s.UnpinLeaderCommand(SVC, None))  # no pin: nothing written
    assert node.operations.find_service(SVC).revision == revision
    assert node.operations.find_service(SVC).meta is None


def test_no_serving_instance_means_no_leader_and_a_pin_waits(node: NodeRuntime) -> None:
    register(node, 1)
    register(node, 2)
    node.operations.pin_leader(s.PinLeaderCommand(SVC, None, "10.0.0.2", 80))
    set_health(node, 2, False)
    assert led_by(node) == ("10.0.0.1", False, "")  # the pinned one is down: the oldest leads
    set_health(node, 1, False)
    with pytest.raises(NotFound, match="no leader found"):
        node.operations.leader(SVC, None)
    set_health(node, 2, True)
    assert led_by(node) == ("10.0.0.2", True, "")


# -- the edge ------------------------------------------------------------------------------------


def test_the_endpoint_answers_pins_and_unpins(node: NodeRuntime, client: Client) -> None:
    for n in (1, 2):
        assert (
            client.post(f"/nacos/v1/ns/instance?serviceName=s&ip=10.0.0.{n}&port=80").status_code
            == 200
        )
    got = client.get(LEADER, {"serviceName": "s"})
    assert got.status_code == 200
    assert got.json() == {
        "instanceId": "10.0.0.1#80#DEFAULT#DEFAULT_GROUP@@s",
        "ip": "10.0.0.1",
        "port": 80,
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": True,
        "clusterName": "DEFAULT",
        "serviceName": "DEFAULT_GROUP@@s",
        "metadata": {},
        "pinned": False,
        "scope": "",
    }
    pinned = client.put(
        LEADER, "serviceName=s&ip=10.0.0.2&port=80", "application/x-www-form-urlencoded"
    )
    assert (pinned.status_code, pinned.content) == (200, b"ok")
    got = client.get(LEADER, {"serviceName": "s", "clusterName": "DEFAULT"}).json()
    assert (got["ip"], got["pinned"], got["scope"]) == ("10.0.0.2", True, "DEFAULT")
    for _ in range(2):  # idempotent
        assert client.delete(f"{LEADER}?serviceName=s").status_code == 200
    got = client.get(LEADER, {"serviceName": "s"}).json()
    assert (got["ip"], got["pinned"]) == ("10.0.0.1", False)


@pytest.mark.parametrize(
    ("method", "query", "status", "text"),
    [
        ("GET", "serviceName=nope", 404, "not found"),
        ("GET", "serviceName=s&clusterName=nope", 404, "no cluster nope"),
        ("GET", "serviceName=s&clusterName=bad%20name", 400, "cluster name"),
        ("GET", "", 400, "serviceName"),
        ("PUT", "serviceName=s&port=80", 400, "'ip' is required"),
        ("PUT", "serviceName=s&ip=10.0.0.1", 400, "'port' is required"),
        ("PUT", "serviceName=s&ip=not-an-ip!&port=80", 400, "ip format invalid"),
        ("PUT", "serviceName=s&ip=10.0.0.1&port=99999", 400, "port out of range"),
        ("PUT", "serviceName=s&ip=10.0.0.1&port=abc", 400, "For input string"),
        ("PUT", "serviceName=s&ip=10.0.0.9&port=80", 404, "no instance 10.0.0.9:80"),
        ("PUT", "serviceName=nope&ip=10.0.0.1&port=80", 404, "not found"),
        ("PUT", "serviceName=s&ip=10.0.0.1&port=80&clusterName=x", 404, "no cluster x"),
        ("DELETE", "serviceName=nope", 404, "not found"),
        ("POST", "serviceName=s", 501, "no such api"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    node: NodeRuntime, client: Client, method: str, query: str, status: int, text: str
) -> None:
    register(node, 1)
    answer = client.generic(method, f"{LEADER}?{query}")
    assert answer.status_code == status, answer.content
    assert text in answer.content.decode()


def test_no_healthy_instance_is_a_404(node: NodeRuntime, client: Client) -> None:
    register(node, 1, healthy=False)
    answer = client.get(LEADER, {"serviceName": "s"})
    assert answer.status_code == 404 and b"no leader found" in answer.content


# -- RBAC ---------------------------------------------------------------------------------------


@pytest.fixture
def secured(node: NodeRuntime) -> NodeRuntime:
    """The unit ``node`` with auth on: a reader and a writer of the public namespace."""
    key = b"leader-test-key-0123456789abcdef"
    node.auth = Authenticator(key, UserDirectory(node.accounts), pool=HashingPool(nice=0))
    node.accounts.ensure_admin("admin-pw-1", lambda: "unused")
    for user, action in (("reader", "r"), ("writer", "rw")):
        node.accounts.create_user(user, "password-1")
        node.accounts.bind_role(f"ROLE_{user}", user)
        node.accounts.add_permission(f"ROLE_{user}", ":*:*", action)
    wait_for(lambda: node.accounts.directory().permissions_of(["ROLE_writer"]), 5.0, 0.01)
    runtime.install(node)  # again: the edges take the authenticator when installed
    return node


def test_reading_needs_read_and_pinning_needs_write(secured: NodeRuntime, client: Client) -> None:
    register(secured, 1)
    as_reader = "username=reader&password=password-1&serviceName=s"
    as_writer = "username=writer&password=password-1&serviceName=s"
    pin = "&ip=10.0.0.1&port=80"
    assert client.get(f"{LEADER}?serviceName=s").status_code == 403  # no credentials
    assert client.get(f"{LEADER}?{as_reader}").status_code == 200
    for method, query in (("PUT", as_reader + pin), ("DELETE", as_reader)):
        answer = client.generic(method, f"{LEADER}?{query}")
        assert (answer.status_code, answer.content) == (403, b"authorization failed!")
    assert client.put(f"{LEADER}?{as_writer}{pin}").status_code == 200
    assert client.get(f"{LEADER}?{as_reader}").json()["pinned"] is True
    assert client.delete(f"{LEADER}?{as_writer}").status_code == 200


# -- console ------------------------------------------------------------------------------------


def test_the_console_marks_the_leaders(node: NodeRuntime, client: Client) -> None:
    register(node, 1, "a")
    register(node, 2, "b")
    register(node, 3, "b")
    node.operations.pin_leader(s.PinLeaderCommand(SVC, "b", "10.0.0.3", 80))
    html = client.get("/nacos/console/service/instances?name=s").content.decode()
    assert '10.0.0.1 <span class="badge leader">leader</span>' in html
    assert '10.0.0.2 <span class="badge' not in html
    assert '10.0.0.3 <span class="badge leader">cluster leader, pinned</span>' in html
