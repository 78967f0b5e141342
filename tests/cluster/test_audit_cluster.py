"""The audit trail across a 3-member cluster: a write made through member 1 shows in the audit
query of member 3, recorded where it was applied with the client's user and address; a member
that is down is named, not fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, running_cluster, wait_for
from tests.cluster.distro_support import service_owned_by

pytestmark = pytest.mark.xdist_group("audit-cluster")

AUDIT = "/nacos/v1/console/audit"


def cluster_trail(node: NodeProcess, **filters: Any) -> dict[str, Any]:
    answer = node.request("GET", AUDIT, {**filters, "accessToken": node.token()})
    assert answer.status == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_writes_through_member_1_show_in_the_audit_of_member_3(tmp_path: Path):
    with running_cluster(tmp_path) as nodes:
        first, second, third = nodes
        # Ephemeral, owned by member 2: member 1 forwards it, member 2 applies and records it.
        owned = service_owned_by(nodes, second, "audit-eph")
        result = first.api(
            "POST", "/instance", {"serviceName": owned, "ip": "10.30.0.1", "port": 1}
        )
        assert result.text == "ok"
        # Persistent: through Raft, recorded on member 1 (the member that submitted it).
        persistent = {"serviceName": "audit-cp", "ip": "10.30.0.2", "port": 2, "ephemeral": "false"}
        assert first.api("POST", "/instance", persistent).text == "ok"

        body = cluster_trail(third, kind="instance", object="10.30.0.")
        assert body["membersAnswered"] == sorted(n.address for n in nodes)
        assert body["membersFailed"] == {}
        by_ip = {e["instance"]: e for e in body["pageItems"]}
        forwarded = by_ip["10.30.0.1:1"]
        assert forwarded["member"] == second.address
        assert (forwarded["user"], forwarded["address"]) == ("nacos", "127.0.0.1")
        assert forwarded["reason"] == f"POST /nacos/v1/ns/instance (forwarded by {first.address})"
        raft = by_ip["10.30.0.2:2"]
        assert (raft["member"], raft["user"], raft["action"]) == (
            first.address,
            "nacos",
            "register",
        )
        assert body["pageItems"][0]["time"] >= body["pageItems"][-1]["time"]  # newest first

        # Only this member's entries with scope=local; a peer's signed query never fans out.
        local = cluster_trail(third, scope="local", object="10.30.0.")
        assert (local["totalCount"], local["membersAnswered"]) == (0, [third.address])

        second.stop()

        def second_failed() -> dict[str, Any] | None:
            found = cluster_trail(third, object="10.30.0.")
            return found if second.address in found["membersFailed"] else None

        partial = wait_for(second_failed, 15.0, interval_s=0.5, message="member 2 reported down")
        assert partial is not None
        assert partial["membersAnswered"] == sorted([first.address, third.address])
        assert [e["instance"] for e in partial["pageItems"]] == ["10.30.0.2:2"]
