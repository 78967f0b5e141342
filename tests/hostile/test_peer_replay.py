"""A signed peer call captured on its way to one member cannot be replayed to another (issue #8).

Before: the signature did not cover the receiver and each member remembers only the nonces it
saw, so a forwarded ``DELETE /instance`` sent to A, replayed to C within the 30 s window, deleted
the instance again after it had been re-registered; and the refusals of forged calls left no log
line. Real 3-member cluster; the test holds the cluster secret to sign like a member does.
"""

from __future__ import annotations

import time
from pathlib import Path

from distro.signing import RECEIVER
from testkit.harness import NodeProcess, running_cluster, wait_for
from tests.cluster.distro_support import ports, raw_call, service_owned_by, signed_call


def _listed_everywhere(nodes: list[NodeProcess], service: str, expected: set[int]) -> None:
    for node in nodes:
        wait_for(
            lambda n=node: ports(n, service) == expected,  # type: ignore[misc]
            10,
            interval_s=0.05,
            message=f"{service} = {expected} on {node.address}",
        )


def _register(node: NodeProcess, service: str, port: int) -> None:
    result = node.api(
        "POST", "/instance", {"serviceName": service, "ip": "127.0.0.1", "port": port}
    )
    assert (result.status, result.text) == (200, "ok")


def test_a_signed_call_replayed_to_another_member_is_refused_and_logged(tmp_path: Path):
    with running_cluster(tmp_path) as cluster:
        a, b, c = cluster
        service = service_owned_by(cluster, a, "replay-victim")
        _register(a, service, 7001)
        _listed_everywhere(cluster, service, {7001})

        # B forwards a client's deregistration to the owner A (as facades.nacos_v1.forward does).
        path = f"/nacos/v1/ns/instance?serviceName={service}&ip=127.0.0.1&port=7001"
        first, captured = signed_call(a, "DELETE", path, sender=b.address)
        assert (first.status, first.text) == (200, "ok")
        _listed_everywhere(cluster, service, set())

        _register(a, service, 7001)
        _listed_everywhere(cluster, service, {7001})

        # The captured call, replayed to C inside the window: refused, nothing deleted.
        replay = raw_call(c, "DELETE", path, b"", captured)
        assert replay.status == 403, replay.text
        assert f"addressed to {a.address}" in replay.text
        # Pointing the receiver header at C breaks the signature instead.
        rewritten = raw_call(c, "DELETE", path, b"", {**captured, RECEIVER: c.address})
        assert rewritten.status == 403 and "does not match" in rewritten.text
        time.sleep(1.0)  # a deletion would have replicated by now
        for node in cluster:
            assert ports(node, service) == {7001}, node.address

        # The first refusal is logged at once; the second falls in the same 10 s window.
        wait_for(
            lambda: "refused peer call DELETE /nacos/v1/ns/instance" in c.log(),
            5,
            message="the refusal in C's log",
        )
        assert f"addressed to {a.address}, not to {c.address}" in c.log()
