"""Service leaders on a 3-member cluster (issue #13, item 4): every member reports the same
leader, for ephemeral instances registered through different members (the registration order
is the Distro owner's) and for persistent ones (the Raft log's order), also after a
deregistration, and a pin set through one member holds on all."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, running_cluster, wait_for

pytestmark = pytest.mark.xdist_group("leaders-cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with running_cluster(Path(tmp_path_factory.mktemp("leaders"))) as nodes:
        yield nodes


def ip(n: int) -> str:
    # Outside 127.0.0.0/8: persistent instances are not probed (the harness checks loopback
    # only), so they stay healthy as registered.
    return f"10.41.0.{n}"


def leader_on(node: NodeProcess, svc: str) -> str | None:
    answer = node.api("GET", "/service/leader", {"serviceName": svc}, timeout=5)
    return str(answer.json()["ip"]) if answer.status == 200 else None


def all_report(nodes: list[NodeProcess], svc: str, wanted: str | None) -> None:
    for node in nodes:
        wait_for(
            functools.partial(lambda n: leader_on(n, svc) == wanted, node),
            20,
            interval_s=0.1,
            message=f"{wanted} leading {svc} on {node.address}",
        )


def call(node: NodeProcess, method: str, path: str, **params: object) -> None:
    answer = node.api(method, path, dict(params))
    assert (answer.status, answer.text) == (200, "ok"), answer.text


@pytest.mark.parametrize("ephemeral", ["true", "false"])
def test_every_member_reports_the_same_leader(cluster: list[NodeProcess], ephemeral: str) -> None:
    svc = f"leaders-{ephemeral}-{secrets.token_hex(3)}"
    for n, node in enumerate(cluster * 2, start=1):  # each member registers two of six
        call(node, "POST", "/instance", serviceName=svc, ip=ip(n), port=80, ephemeral=ephemeral)
    all_report(cluster, svc, ip(1))
    call(cluster[2], "DELETE", "/instance", serviceName=svc, ip=ip(1), port=80, ephemeral=ephemeral)
    all_report(cluster, svc, ip(2))
    call(cluster[0], "DELETE", "/instance", serviceName=svc, ip=ip(3), port=80, ephemeral=ephemeral)
    call(cluster[1], "DELETE", "/instance", serviceName=svc, ip=ip(2), port=80, ephemeral=ephemeral)
    all_report(cluster, svc, ip(4))
    # A pin through one member holds on all; unpinned through another, the oldest leads again.
    call(cluster[1], "PUT", "/service/leader", serviceName=svc, ip=ip(6), port=80)
    all_report(cluster, svc, ip(6))
    call(cluster[2], "DELETE", "/service/leader", serviceName=svc)
    all_report(cluster, svc, ip(4))
