"""airlift in a 3-member cluster (issue #14): a node announcing through a member that does not
own its type's service stays listed on every member for as long as it announces (its renewals
reach the owner, which alone keeps beats and expires), and expires everywhere once it stops."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distro.mapper import DistroMapper
from testkit.airlift import Announcer
from testkit.harness import NodeProcess, running_cluster, wait_for

pytestmark = pytest.mark.xdist_group("airlift-cluster")

ENV = "testing"
MAX_AGE_S = 6
POOL = "general"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    env = {"NAMING_AIRLIFT_ENVIRONMENT": ENV, "NAMING_AIRLIFT_MAX_AGE_S": str(MAX_AGE_S)}
    with running_cluster(
        Path(tmp_path_factory.mktemp("airlift-cluster")), env=env, facades=("airlift",)
    ) as nodes:
        yield nodes


def type_owned_by(nodes: list[NodeProcess], owner: NodeProcess) -> str:
    mapper = DistroMapper.of(nodes[0].address, [n.address for n in nodes])
    for n in itertools.count():
        kind = f"worker{n}"
        if mapper.owner(f"{POOL}@@{kind}") == owner.address:
            return kind
    raise AssertionError("unreachable")


def listed(node: NodeProcess, kind: str) -> int:
    answer = node.api("GET", "/instance/list", {"serviceName": kind, "groupName": POOL})
    assert answer.status == 200, answer.text
    return len(answer.json()["hosts"])


def test_renewals_through_a_non_owner_keep_the_announcement_alive(
    members: list[NodeProcess],
) -> None:
    owner, through = members[0], members[1]
    kind = type_owned_by(members, owner)
    service = Announcer.service(kind, {"http": "http://127.0.0.1:18081", "node_version": "1"})
    worker = Announcer(
        through.facade_base("airlift"), str(uuid.uuid4()), ENV, POOL, [service]
    ).start()
    try:
        wait_for(lambda: all(listed(n, kind) == 1 for n in members), 20, message="listed")
        # Three lease lengths of announcing through the non-owner: listed on every member
        # throughout (before renewals reached the owner, it expired there after one).
        gaps: list[tuple[float, str]] = []
        started = time.monotonic()
        while time.monotonic() - started < 3 * MAX_AGE_S:
            for node in members:
                if listed(node, kind) != 1:
                    gaps.append((round(time.monotonic() - started, 2), node.address))
            time.sleep(0.25)
        assert gaps == [], f"the announcement left a member while announced: {gaps[:5]}"
        assert worker.failures == 0, worker.statuses
    finally:
        worker.kill()
    wait_for(
        lambda: all(listed(n, kind) == 0 for n in members),
        MAX_AGE_S + 30,
        message="expired on every member after the last PUT",
    )
