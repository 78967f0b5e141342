"""Event streams on a 3-member cluster (issue #13 acceptance): a stream opened on member B sees
the changes registered through member C, in order, whichever member owns the service.

Member B learns an ephemeral change from the owner's Distro sync, which may carry several
registrations at once; the feed still gives one ``up`` per instance, in the stored (registration)
order, so the check is exact: every ``up`` in order, the leader events of the first instance, and
nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path

from testkit.harness import running_cluster
from testkit.sse import stream

logging.getLogger("httpx").setLevel(logging.WARNING)

COUNT = 60


def test_a_stream_on_b_sees_what_c_registered_in_order(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as (_, b, c):
        svc = "watched"
        ips = [f"10.40.{i // 200}.{i % 200 + 1}" for i in range(COUNT)]
        with stream(b, {"groupName": "DEFAULT_GROUP"}) as reader:
            current = reader.next()
            assert '"kind":"current"' in current.data
            for ip in ips:
                done = c.api("POST", "/instance", {"serviceName": svc, "ip": ip, "port": 80})
                assert (done.status, done.text) == (200, "ok"), done.text
            got = reader.changes(COUNT + 2, timeout=60)
            reader.nothing_more(2.0)
    ups = [e["instance"]["ip"] for e in got if e["kind"] == "up"]
    leaders = [(e["scope"], e["instance"]["ip"]) for e in got if e["kind"] == "leader"]
    assert ups == ips
    assert sorted(leaders) == [("", ips[0]), ("DEFAULT", ips[0])]
    assert {e["serviceName"] for e in got} == {svc}
    indexes = [int(e["id"].rpartition("-")[2]) for e in got]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
