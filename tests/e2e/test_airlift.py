"""airlift discovery against a real node on its own port (issue #14 acceptance): a Python
announcer that behaves like airlift's (``testkit/airlift.py``) announces, re-announces at 0.8 x
the server's max-age and is found by lookups and by Nacos clients; a node that stops
announcing expires ``NAMING_AIRLIFT_MAX_AGE_S`` after its last PUT (6 s here, to keep it
quick); another environment is refused; static announcements survive a restart; an unchanged
lookup with the previous ETag is a 304."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.airlift import Announcer, lookup
from testkit.harness import NodeProcess, free_port, running_node, wait_for

ENV = "testing"
MAX_AGE_S = 6


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {
        "NAMING_AIRLIFT_PORT": str(free_port()),
        "NAMING_AIRLIFT_ENVIRONMENT": ENV,
        "NAMING_AIRLIFT_MAX_AGE_S": str(MAX_AGE_S),
    }
    with running_node(tmp_path_factory.mktemp("airlift"), env=env) as started:
        yield started


def announcer(node: NodeProcess, kind: str, pool: str = "general", **kw: str) -> Announcer:
    service = Announcer.service(kind, {"http": "http://127.0.0.1:18080", "node_version": "1"})
    return Announcer(
        node.facade_base("airlift"),
        kw.get("node_id", str(uuid.uuid4())),
        kw.get("environment", ENV),
        pool,
        [service],
        location="/test",
    )


def ids(node: NodeProcess, kind: str, pool: str | None = None) -> set[str]:
    return {s["id"] for s in lookup(node.facade_base("airlift"), ENV, kind, pool).services}


def nacos_hosts(node: NodeProcess, service: str, group: str) -> list[dict[str, object]]:
    answer = node.api("GET", "/instance/list", {"serviceName": service, "groupName": group})
    assert answer.status == 200, answer.text
    return list(answer.json()["hosts"])


def test_announcements_appear_renew_and_are_withdrawn(node: NodeProcess) -> None:
    worker = announcer(node, "trino").start()
    try:
        sid = worker.services[0]["id"]
        wait_for(lambda: sid in ids(node, "trino", "general"), 20, message="the announcement")
        # The server may list it before the announcer's thread has read the PUT's answer.
        wait_for(lambda: worker.max_age_s is not None, 10, message="the PUT's answer")
        assert worker.max_age_s == MAX_AGE_S // 3  # re-announce every 0.8 x 2 s
        [host] = nacos_hosts(node, "trino", "general")  # the Nacos v1 API sees it too
        assert (host["ip"], host["port"], host["instanceId"]) == ("127.0.0.1", 18080, sid)
        # Renewals keep it past several max-ages.
        wait_for(lambda: worker.puts >= 6, 30, message="renewals")
        assert sid in ids(node, "trino")
        assert set(worker.statuses) == {202}
    finally:
        assert worker.stop() == 204
    assert ids(node, "trino", "general") == set()
    assert nacos_hosts(node, "trino", "general") == []


def test_a_node_that_stops_announcing_expires_after_max_age(node: NodeProcess) -> None:
    worker = announcer(node, "presto").start()
    sid = worker.services[0]["id"]
    wait_for(lambda: sid in ids(node, "presto"), 20, message="the announcement")
    worker.kill()  # no DELETE: a crashed worker
    assert worker.last_success is not None
    last = worker.last_success
    # Still there well inside the lease (a loaded box may be slow to read: only if in time).
    if time.monotonic() - last < MAX_AGE_S / 2:
        assert sid in ids(node, "presto")
    wait_for(lambda: sid not in ids(node, "presto"), MAX_AGE_S + 30, message="the expiry")
    gone_after = time.monotonic() - last
    assert gone_after >= MAX_AGE_S - 0.5, f"expired {gone_after:.1f} s after the last PUT"
    assert nacos_hosts(node, "presto", "general") == []


def test_another_environment_is_refused_and_retried(node: NodeProcess) -> None:
    stray = announcer(node, "stray", environment="production").start()
    try:
        wait_for(lambda: stray.failures >= 5, 20, message="refusals")
    finally:
        stray.kill()
    assert set(stray.statuses) == {400} and stray.puts == 0
    answer = node.request(
        "PUT",
        f"/v1/announcement/{stray.node_id}",
        body=stray.body(),
        headers={"Content-Type": "application/json"},
        base=node.facade_base("airlift"),
    )
    assert answer.text == f"Environment mismatch. Expected: {ENV}, Provided: production"
    assert ids(node, "stray") == set()
    counted = node.api("GET", "/operator/metrics").json()["airlift"]
    assert counted["wrongEnvironment"] >= 5 and counted["announcements"] >= 0


def test_an_unchanged_lookup_is_a_304(node: NodeProcess) -> None:
    worker = announcer(node, "coordinator").start()
    try:
        sid = worker.services[0]["id"]
        base = node.facade_base("airlift")
        first = wait_for(
            lambda: (r := lookup(base, ENV, "coordinator")).services and r,
            20,
            message="the announcement",
        )
        assert first.etag and first.max_age_s == 6
        again = lookup(base, ENV, "coordinator", etag=first.etag)
        assert (again.status, again.etag) == (304, first.etag)
        other = announcer(node, "coordinator").start()
        try:
            changed = wait_for(
                lambda: (
                    (r := lookup(base, ENV, "coordinator", etag=first.etag)).status == 200 and r
                ),
                20,
                message="a changed list",
            )
            assert sid in {s["id"] for s in changed.services} and changed.etag != first.etag
        finally:
            other.stop()
    finally:
        worker.stop()


def test_static_announcements_survive_a_restart(node: NodeProcess) -> None:
    base = node.facade_base("airlift")
    body = (
        b'{"environment": "testing", "type": "gateway", "pool": "general",'
        b' "properties": {"http": "http://127.0.0.1:18081"}}'
    )
    created = node.request(
        "POST",
        "/v1/announcement/static",
        body=body,
        headers={"Content-Type": "application/json"},
        base=base,
    )
    assert created.status == 201, created.text
    sid = created.json()["id"]
    assert created.headers["Location"].endswith(f"/v1/announcement/static/{sid}")
    node.restart()
    listed = node.request("GET", "/v1/announcement/static", base=base).json()
    assert [s["id"] for s in listed["services"]] == [sid]
    assert ids(node, "gateway", "general") == {sid}
    deleted = node.request("DELETE", f"/v1/announcement/static/{sid}", base=base)
    assert deleted.status == 204
    assert ids(node, "gateway") == set()


def get_counts(node: NodeProcess) -> dict[str, float]:
    """Requests timed per ``route`` for GET, from one ``/metrics`` answer."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(node.request("GET", "/metrics").text):
        if family.name == "naming_http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels.get("method") == "GET":
                    counts[sample.labels["route"]] = float(sample.value)
    return counts


def test_the_airlift_port_is_timed_in_a_series_of_its_own(node: NodeProcess) -> None:
    before = get_counts(node)
    base = node.facade_base("airlift")
    for _ in range(3):
        lookup(base, ENV, "timed")
    after = get_counts(node)
    assert after["airlift"] - before.get("airlift", 0.0) == 3
    # Not in the main port's "other" series: only the first /metrics call itself (counted once
    # it has answered) is in between.
    assert after["other"] - before.get("other", 0.0) <= 1
