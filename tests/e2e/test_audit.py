"""The audit trail on a real node: writes through HTTP carry the caller, its address and the
endpoint; heartbeat expiry is the system's; the trail is admin-only and survives a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, running_node, wait_for

FAST_SWEEP = {"NAMING_SWEEP_INTERVAL_S": "0.1"}
AUDIT = "/nacos/v1/console/audit"


@pytest.fixture(scope="module")
def fast_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("audit")), env=FAST_SWEEP) as node:
        yield node


def trail(node: NodeProcess, **filters: Any) -> list[dict[str, Any]]:
    answer = node.request("GET", AUDIT, {**filters, "accessToken": node.token()})
    assert answer.status == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["pageItems"]
    return items


def test_register_and_deregister_are_recorded_with_user_address_and_reason(
    fast_node: NodeProcess, svc: str
):
    instance = {"serviceName": svc, "ip": "10.20.0.1", "port": "8080"}
    assert fast_node.api("POST", "/instance", instance).text == "ok"
    assert fast_node.api("DELETE", "/instance", instance).text == "ok"
    entries = trail(fast_node, object=svc)
    assert [e["action"] for e in entries] == ["deregister", "register"]
    for entry in entries:
        assert entry["user"] == "nacos"
        assert entry["address"] == "127.0.0.1"
        assert entry["via"] == "api"
        assert entry["member"] == fast_node.address
        assert entry["object"] == f"public/DEFAULT_GROUP@@{svc}/DEFAULT/10.20.0.1:8080"
    assert entries[0]["reason"] == "DELETE /nacos/v1/ns/instance"
    assert entries[1]["reason"] == "POST /nacos/v1/ns/instance"
    assert entries[1]["after"]["healthy"] is True and entries[1]["before"] is None


def test_heartbeat_expiry_is_recorded_as_the_system(fast_node: NodeProcess, svc: str):
    metadata = {"preserved.heart.beat.timeout": "300", "preserved.ip.delete.timeout": "600"}
    fast_node.api(
        "POST",
        "/instance",
        {"serviceName": svc, "ip": "10.20.0.2", "port": "80", "metadata": json.dumps(metadata)},
    )

    def expired() -> list[dict[str, Any]] | None:
        found = [e for e in trail(fast_node, object=svc) if e["reason"] == "heartbeat expiry"]
        return found if len(found) == 2 else None

    entries = wait_for(expired, 10.0, interval_s=0.2, message="expiry in the audit trail")
    assert entries is not None
    removed, unhealthy = entries
    assert (removed["user"], removed["via"], removed["action"]) == (
        "system",
        "system",
        "deregister",
    )
    assert (unhealthy["action"], unhealthy["after"]["healthy"]) == ("health", False)


def test_the_trail_is_for_admins_only(fast_node: NodeProcess):
    assert fast_node.request("GET", AUDIT).status == 403
    assert fast_node.request("GET", AUDIT, {"accessToken": "forged"}).status == 403


def test_the_trail_survives_a_restart(tmp_path: Path, svc: str):
    with running_node(tmp_path / "n") as node:
        node.api("POST", "/instance", {"serviceName": svc, "ip": "10.20.0.3", "port": "80"})
        node.restart()
        entries = trail(node, object=svc, user="nacos")
        assert [e["action"] for e in entries] == ["register"]


def test_user_management_is_recorded_with_the_admin_and_no_hash(fast_node: NodeProcess):
    token = {"accessToken": fast_node.token()}
    created = fast_node.request(
        "POST", "/nacos/v1/auth/users", {**token, "username": "auditee", "password": "pw-123456"}
    )
    assert created.status == 200, created.text
    entries = trail(fast_node, object="user/auditee")
    assert [(e["action"], e["user"], e["reason"]) for e in entries] == [
        ("create_user", "nacos", "POST /nacos/v1/auth/users")
    ]
    assert entries[0]["after"] == {"username": "auditee", "admin": False, "password": "changed"}
    assert "pbkdf2" not in json.dumps(entries)
