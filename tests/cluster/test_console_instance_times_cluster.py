"""On a cluster the Raft leader probes persistent instances and alone keeps their last checks:
its detail page shows the last check, a follower's names the leader instead; the registration
time, replicated with the instance, reads the same on every member."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from testkit.harness import leader_of, running_cluster, wait_for
from tests.e2e.test_console_instance_times import closed_port, console, registered, row


@pytest.mark.slow
def test_the_leader_shows_the_last_check_and_followers_name_it(tmp_path: Path):
    with running_cluster(tmp_path, 3) as nodes:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        port = closed_port()
        params = {"serviceName": "probed", "ip": "127.0.0.1", "port": port, "ephemeral": "false"}
        assert follower.api("POST", "/instance", params).text == "ok"
        on_leader: requests.Session = console(leader)

        def checked() -> str | None:
            cells = row(on_leader, leader, "probed", "127.0.0.1", port)
            return cells if "failed</time>" in cells else None

        cells = wait_for(checked, 30, interval_s=0.5, message="the leader's last check")
        assert cells is not None
        on_follower = console(follower)
        follower_cells = row(on_follower, follower, "probed", "127.0.0.1", port)
        assert f"check: checked by the leader {leader.address}" in follower_cells
        assert registered(follower_cells) == registered(cells)
