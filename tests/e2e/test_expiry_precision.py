"""Expiry precision (issue #11 item 4) through the real v1 Python SDK against a real node.

An instance registered with ``preserved.heart.beat.timeout=2000`` and
``preserved.ip.delete.timeout=5000`` beats once and stops. A consumer polling the list every
0.5 s must see it unhealthy at some poll before it disappears, unhealthy no later than its
heartbeat timeout + 1 s, gone no later than its delete timeout + 1 s (plus slack for a loaded
box: these are correctness bounds from the issue, not performance figures). The node runs with
its default tick (``NAMING_SWEEP_INTERVAL_S`` = 0.25).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, running_node

pytestmark = [pytest.mark.slow]

SLACK_S = 2.0
POLL_S = 0.5


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("expiry"))) as started:
        yield started


def hosts(client: Any, service: str) -> dict[str, bool]:
    listed = client.list_naming_instance(service, healthy_only=False)
    return {h["ip"]: h["healthy"] for h in listed["hosts"]}


@pytest.mark.parametrize(
    ("timeout_ms", "delete_ms"),
    [(2000, 5000), (3000, 4500)],
    ids=["2s-5s", "3s-4.5s"],
)
def test_a_silent_instance_is_listed_unhealthy_before_it_is_removed_each_on_time(
    node: NodeProcess, timeout_ms: int, delete_ms: int
):
    client = node.client()
    service = f"expiry-{timeout_ms}-{delete_ms}"
    # A healthy instance beating through the SDK's own thread keeps the protect threshold
    # (0: an all-unhealthy list is shown healthy) from masking the silent one.
    client.add_naming_instance(
        service, "10.11.0.9", 80, cluster_name="DEFAULT", heartbeat_interval=1
    )
    meta = {
        "preserved.heart.beat.interval": "1000",
        "preserved.heart.beat.timeout": str(timeout_ms),
        "preserved.ip.delete.timeout": str(delete_ms),
    }
    client.add_naming_instance(service, "10.11.0.1", 80, cluster_name="DEFAULT", metadata=meta)
    before_beat = time.monotonic()
    client.send_heartbeat(service, "10.11.0.1", 80, cluster_name="DEFAULT", metadata=meta)
    after_beat = time.monotonic()

    polls: list[tuple[float, bool | None]] = []  # (seconds since the beat, health or gone)
    end = after_beat + delete_ms / 1000 + 1 + SLACK_S + 5
    while time.monotonic() < end:
        health = hosts(client, service).get("10.11.0.1")
        polls.append((time.monotonic() - before_beat, health))
        if health is None:
            break
        time.sleep(POLL_S)

    unhealthy = [t for t, h in polls if h is False]
    gone = [t for t, h in polls if h is None]
    assert unhealthy, f"never listed unhealthy before it disappeared: {polls}"
    assert gone, f"still listed: {polls}"
    timeout_s, delete_s = timeout_ms / 1000, delete_ms / 1000
    beat_took = after_beat - before_beat
    # Never early: healthy at every poll before the timeout, listed until the delete timeout.
    assert all(h is True for t, h in polls if t < timeout_s), polls
    assert gone[0] > delete_s, polls
    # On time: within a second of each deadline, plus the slack, plus the poll spacing.
    assert unhealthy[0] <= timeout_s + beat_took + 1 + POLL_S + SLACK_S, polls
    assert gone[0] <= delete_s + beat_took + 1 + POLL_S + SLACK_S, polls
    assert hosts(client, service) == {"10.11.0.9": True}
    client.remove_naming_instance(service, "10.11.0.9", 80, cluster_name="DEFAULT")
