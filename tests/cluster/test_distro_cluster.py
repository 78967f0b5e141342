"""A 3-member Distro (AP) cluster of real node processes: ephemeral instances (issue #3)."""

from __future__ import annotations

import functools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consistency.datum import DatumKey
from distro.protocol import SYNC_PATH
from naming.codec import encode_datum
from naming.domain import ServiceName
from testkit.harness import (
    NodeProcess,
    assert_converged,
    make_cluster,
    running_cluster,
    stop_cluster,
    wait_for,
)
from tests.cluster.distro_support import (
    Beater,
    hosts,
    metrics,
    owner_address,
    ports,
    raw_call,
    service_owned_by,
    signed_call,
)
from tests.e2e.test_push import receive, subscribe

pytestmark = pytest.mark.xdist_group("distro-cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with running_cluster(Path(tmp_path_factory.mktemp("distro"))) as nodes:
        yield nodes


def listed_everywhere(nodes: list[NodeProcess], service: str, expected: set[int]) -> None:
    for node in nodes:
        wait_for(
            functools.partial(lambda n: ports(n, service) == expected, node),
            10,
            interval_s=0.05,
            message=f"{service} = {expected} on {node.address}",
        )


def test_an_instance_registered_through_any_member_is_listed_by_all(cluster):
    for i, node in enumerate(cluster):
        client = node.client()
        for j in range(3):  # services owned by each member, registered through this one
            assert client.add_naming_instance(
                f"sdk-any-{j}", "10.0.1.1", 7000 + i, cluster_name="DEFAULT"
            )
    for j in range(3):
        listed_everywhere(cluster, f"sdk-any-{j}", {7000, 7001, 7002})
    assert_converged(cluster)


def test_deregister_through_a_third_member_removes_it_everywhere(cluster):
    first, _, third = cluster
    assert first.client().add_naming_instance("sdk-dereg", "10.0.1.2", 7100, cluster_name="DEFAULT")
    assert first.client().add_naming_instance("sdk-dereg", "10.0.1.2", 7101, cluster_name="DEFAULT")
    listed_everywhere(cluster, "sdk-dereg", {7100, 7101})
    assert third.client().remove_naming_instance(
        "sdk-dereg", "10.0.1.2", 7100, cluster_name="DEFAULT"
    )
    listed_everywhere(cluster, "sdk-dereg", {7101})


def test_a_write_to_a_non_owner_is_forwarded_once_to_the_owner(cluster):
    owner = cluster[1]
    service = service_owned_by(cluster, owner, "fwd")
    other = next(n for n in cluster if n is not owner)
    before = metrics(other)["distro"]["forwarded"]
    owner_before = metrics(owner)["distro"]["forwarded"]
    result = other.api("POST", "/instance", {"serviceName": service, "ip": "10.0.2.1", "port": 1})
    assert (result.status, result.text) == (200, "ok")
    assert metrics(other)["distro"]["forwarded"] == before + 1
    assert metrics(owner)["distro"]["forwarded"] == owner_before, "the owner kept it"
    answer = owner.api("GET", "/operator/distro/server", {"serviceName": service}).json()
    assert answer["responsibleServer"] == owner.address
    listed_everywhere(cluster, service, {1})


def test_reads_are_served_locally_without_forwarding(cluster):
    owner = cluster[2]
    service = service_owned_by(cluster, owner, "read")
    assert owner.api("POST", "/instance", {"serviceName": service, "ip": "10.0.2.2", "port": 2})
    other = cluster[0]
    listed_everywhere(cluster, service, {2})
    before = metrics(other)["distro"]["forwarded"]
    for _ in range(5):
        assert ports(other, service) == {2}
    assert metrics(other)["distro"]["forwarded"] == before


def test_persistent_writes_are_not_forwarded_they_go_through_raft(cluster):
    owner = cluster[0]
    service = service_owned_by(cluster, owner, "persist")
    other = cluster[1]
    before = metrics(other)["distro"]["forwarded"]
    result = other.api(
        "POST",
        "/instance",
        {"serviceName": service, "ip": "127.0.0.1", "port": 3, "ephemeral": "false"},
    )
    assert result.text == "ok"
    assert metrics(other)["distro"]["forwarded"] == before
    listed_everywhere(cluster, service, {3})


def test_members_report_state_last_report_and_distro_readiness(cluster):
    for node in cluster:
        data = node.request("GET", "/nacos/v1/core/cluster/nodes").json()["data"]
        assert sorted(m["address"] for m in data) == sorted(n.address for n in cluster)
        now_ms = time.time() * 1000
        for member in data:
            assert member["state"] == "UP"
            assert member["extendInfo"]["distroReady"] is True
            assert now_ms - member["extendInfo"]["lastRefreshTime"] < 10_000
        servers = node.request("GET", "/nacos/v1/ns/operator/servers").json()["servers"]
        assert {s["state"] for s in servers} == {"UP"}


# -- peer security -------------------------------------------------------------------------------


def _sync_body(service: str, port: int, revision: int = 1_000_000) -> bytes:
    key = DatumKey.instances(ServiceName("public", f"DEFAULT_GROUP@@{service}"), True)
    value = [
        {
            "ip": "6.6.6.6",
            "port": port,
            "clusterName": "DEFAULT",
            "weight": 1.0,
            "healthy": True,
            "enabled": True,
            "ephemeral": True,
            "metadata": {},
        }
    ]
    datum = {**encode_datum_stub(key, revision), "value": value}
    return json.dumps({"datums": [datum]}).encode()


def encode_datum_stub(key: DatumKey, revision: int) -> dict[str, object]:
    from consistency.datum import Datum

    return encode_datum(Datum(key, None, revision))


def test_unsigned_peer_calls_get_401_whatever_their_user_agent(cluster):
    node = cluster[0]
    body = _sync_body("evil-unsigned", 6)
    for agent in ("Nacos-Server", "Nacos-Server:1.4.1", "curl/8"):
        result = raw_call(node, "PUT", SYNC_PATH, body, {"User-Agent": agent})
        assert result.status == 401, (agent, result.text)
    report = raw_call(node, "POST", "/nacos/v1/core/cluster/report", b'{"state":"DOWN"}', {})
    assert report.status == 401
    assert node.request("GET", "/nacos/v1/ns/distro/datums", headers={}).status == 401
    touch = node.request("POST", "/nacos/v1/ns/distro/touch", body=b'{"service": "x"}')
    assert touch.status == 401, touch.text
    assert node.api("GET", "/instance/list", {"serviceName": "evil-unsigned"}).json()["hosts"] == []


def test_badly_signed_peer_calls_get_403_and_change_nothing(cluster):
    node = cluster[0]
    body = _sync_body("evil-signed", 6)
    wrong_secret, _ = signed_call(node, "PUT", SYNC_PATH, body, secret="not-the-secret")
    assert wrong_secret.status == 403
    _, headers = signed_call(cluster[1], "PUT", SYNC_PATH, b'{"datums":[]}')
    tampered = raw_call(node, "PUT", SYNC_PATH, body, headers)  # signature of another body
    assert tampered.status == 403
    stranger, _ = signed_call(node, "PUT", SYNC_PATH, body, sender="10.6.6.6:8848")
    assert stranger.status == 403
    assert hosts(node, "evil-signed") == []
    # A forged forwarded write is refused the same way.
    forged = raw_call(
        node,
        "POST",
        "/nacos/v1/ns/instance?serviceName=evil-signed&ip=6.6.6.6&port=6",
        b"",
        {**headers, "User-Agent": "Nacos-Server"},
    )
    assert forged.status == 403
    assert hosts(node, "evil-signed") == []
    assert metrics(node)["status"] == "UP"


def test_a_replayed_peer_call_is_refused(cluster):
    node = cluster[2]
    service = service_owned_by(cluster, cluster[0], "replay")
    body = _sync_body(service, 9, revision=5)
    first, headers = signed_call(node, "PUT", SYNC_PATH, body, sender=cluster[0].address)
    assert (first.status, first.text) == (200, "ok")
    # The datum is stored when the call answers; the registry shows it once the notifier
    # has applied it, which a loaded box can delay.
    wait_for(lambda: ports(node, service) == {9}, 10, interval_s=0.05, message="sync applied")
    replay = raw_call(node, "PUT", SYNC_PATH, body, headers)
    assert replay.status == 403 and "replayed" in replay.text


def test_a_signed_forward_is_handled_where_it_lands_and_never_forwarded_again(cluster):
    owner = cluster[0]
    service = service_owned_by(cluster, owner, "noloop")
    landing = cluster[1]  # not the owner: a forward that lands here must not bounce
    before = metrics(landing)["distro"]["forwarded"]
    path = f"/nacos/v1/ns/instance?serviceName={service}&ip=10.0.3.1&port=4"
    result, _ = signed_call(landing, "POST", path, sender=cluster[2].address)
    assert (result.status, result.text) == (200, "ok")
    assert metrics(landing)["distro"]["forwarded"] == before
    listed_everywhere(cluster, service, {4})
    assert_converged(cluster)


def test_bad_peer_payloads_get_400_and_change_nothing(cluster):
    node = cluster[1]
    digest = metrics(node)["distro"]["digest"]
    for body in (
        b"",
        b"{",
        b'{"datums":[]}',
        b'{"datums":[{"key":"iplist##public##x"}]}',
        b'{"datums":[{"key":"meta##public##DEFAULT_GROUP@@x","revision":1,"value":{}}]}',
    ):
        result, _ = signed_call(node, "PUT", SYNC_PATH, body, sender=cluster[0].address)
        assert result.status == 400, (body, result.text)
    result, _ = signed_call(
        node,
        "PUT",
        "/nacos/v1/ns/distro/checksum?source=" + cluster[0].address,
        b"[1]",
        sender=cluster[0].address,
    )
    assert result.status == 400
    peer = cluster[0].address
    odd_shapes = [
        ("GET", "/nacos/v1/ns/distro/datum", b'{"keys": 5}'),
        ("GET", "/nacos/v1/ns/distro/datum", b'{"keys": [{"a": 1}]}'),
        ("GET", "/nacos/v1/ns/distro/datum", b"[]"),
        ("POST", "/nacos/v1/ns/distro/change", b'{"key": 1, "change": 2}'),
        (
            "POST",
            "/nacos/v1/ns/distro/change",
            b'{"key": "iplist.ephemeral##public##x", "change": {"type": "nope"}}',
        ),
        ("POST", "/nacos/v1/ns/distro/change", b"null"),
        ("PUT", SYNC_PATH, b'{"datums": [{"key": "switches####", "revision": 1, "value": 7}]}'),
        (
            "PUT",
            SYNC_PATH,
            b'{"datums": [{"key": "iplist.ephemeral##p##s", "revision": "x", "value": []}]}',
        ),
        (
            "PUT",
            SYNC_PATH,
            b'{"datums": [{"key": "iplist.ephemeral##p##s", "revision": 1, "value": [1]}]}',
        ),
    ]
    for method, path, body in odd_shapes:
        result, _ = signed_call(node, method, path, body, sender=peer)
        assert result.status == 400, (path, body, result.status, result.text)
    # A renewal answers its errors as data (the sender raises them as the core's errors).
    for body in (b"[1]", b'{"namespace": "public"}', b"not json"):
        result, _ = signed_call(node, "POST", "/nacos/v1/ns/distro/touch", body, sender=peer)
        assert result.status == 200 and '"error"' in result.text, (body, result.text)
    report, _ = signed_call(
        node,
        "POST",
        "/nacos/v1/core/cluster/report",
        b'{"state": "UP", "extendInfo": []}',
        sender=peer,
    )
    assert report.status == 200
    assert metrics(node)["distro"]["digest"] == digest
    assert metrics(node)["status"] == "UP"


# -- readiness and restart -------------------------------------------------------------------


def test_a_restarted_member_loads_the_snapshot_before_it_serves(cluster):
    victim = cluster[2]
    service = service_owned_by(cluster, cluster[0], "warm")
    for port in range(1, 11):
        assert (
            cluster[0]
            .api("POST", "/instance", {"serviceName": service, "ip": "10.0.4.1", "port": port})
            .text
            == "ok"
        )
    listed_everywhere(cluster, service, set(range(1, 11)))
    victim.stop()
    assert (
        cluster[1]
        .api("POST", "/instance", {"serviceName": service, "ip": "10.0.4.1", "port": 11})
        .text
        == "ok"
    )
    # Either live member may give the snapshot: both must hold port 11 (synced by the owner).
    listed_everywhere(cluster[:2], service, set(range(1, 12)))
    victim.start(wait=False)
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            result = victim.api("GET", "/instance/list", {"serviceName": service}, timeout=2)
        except OSError:
            time.sleep(0.02)
            continue
        seen.append(result.status)
        if result.status == 200:
            # Its first answer already holds everything: never an empty or partial list.
            assert {h["port"] for h in result.json()["hosts"]} == set(range(1, 12))
            break
        assert result.status in (401, 403, 503), result.text
        victim._token = None
        time.sleep(0.02)
    assert seen and seen[-1] == 200
    snapshot = metrics(victim)["distro"]["snapshot"]
    assert snapshot["source"] in (cluster[0].address, cluster[1].address)
    assert_converged(cluster)


def test_beats_sent_to_a_non_owner_keep_the_instance_alive(cluster):
    owner = cluster[0]
    service = service_owned_by(cluster, owner, "beat-fwd")
    non_owner = cluster[1]
    client = non_owner.client()
    assert client.add_naming_instance(service, "10.0.5.1", 5000, cluster_name="DEFAULT")
    listed_everywhere(cluster, service, {5000})
    beater = Beater([non_owner], service, "10.0.5.1", 5000, interval_s=3).start()
    try:
        end = time.monotonic() + 20  # past the 15 s heartbeat timeout
        while time.monotonic() < end:
            for node in cluster:
                listed = hosts(node, service)
                assert [(h["port"], h["healthy"]) for h in listed] == [(5000, True)], node.address
            time.sleep(1)
    finally:
        beater.stop()
    assert beater.answers and all(status == 200 for _, status in beater.answers)
    assert owner_address(cluster, service) == owner.address


def test_a_lost_sync_is_repaired_by_verify_within_two_rounds(tmp_path: Path):
    nodes = make_cluster(
        tmp_path,
        3,
        env={"NAMING_FAULT_DROP_SYNC": "true", "NAMING_DISTRO_VERIFY_INTERVAL_S": "1"},
    )
    try:
        owner = nodes[0]
        service = service_owned_by(nodes, owner, "drift")
        for port in (1, 2):
            assert (
                owner.api(
                    "POST", "/instance", {"serviceName": service, "ip": "10.0.6.1", "port": port}
                ).text
                == "ok"
            )
        registered = time.monotonic()
        listed_everywhere(nodes, service, {1, 2})
        assert time.monotonic() - registered < 2 * 1 + 1.5
        assert (
            owner.api(
                "DELETE", "/instance", {"serviceName": service, "ip": "10.0.6.1", "port": 1}
            ).text
            == "ok"
        )
        listed_everywhere(nodes, service, {2})
        assert_converged(nodes)
        assert all(metrics(n)["distro"]["received"]["repaired"] > 0 for n in nodes[1:])
        assert all(metrics(n)["distro"]["received"]["synced"] == 0 for n in nodes)
    finally:
        stop_cluster(nodes)


def test_deleting_a_service_through_a_non_owner_removes_its_instances_everywhere(cluster):
    owner = cluster[1]
    service = service_owned_by(cluster, owner, "del-svc")
    params = {"serviceName": service, "ip": "10.0.9.1", "port": 9}
    assert owner.api("POST", "/instance", params).text == "ok"
    listed_everywhere(cluster, service, {9})
    other = cluster[2]
    assert other.api("DELETE", "/service", {"serviceName": service}).text == "ok"
    for node in cluster:
        wait_for(
            functools.partial(
                lambda n: n.api("GET", "/service", {"serviceName": service}).status == 404, node
            ),
            10,
            interval_s=0.05,
        )
    assert_converged(cluster)


def test_a_sync_batch_larger_than_a_client_body_is_accepted_from_a_peer(cluster):
    node = cluster[1]
    service = service_owned_by(cluster, cluster[0], "bulk")
    key = DatumKey.instances(ServiceName("public", f"DEFAULT_GROUP@@{service}"), True)
    value = [
        {
            "ip": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
            "port": 80,
            "clusterName": "DEFAULT",
            "weight": 1.0,
            "healthy": True,
            "enabled": True,
            "ephemeral": True,
            "metadata": {"zone": "z" * 64},
        }
        for n in range(8000)
    ]
    body = json.dumps({"datums": [{**encode_datum_stub(key, 7), "value": value}]}).encode()
    assert len(body) > 1024 * 1024
    result, _ = signed_call(node, "PUT", SYNC_PATH, body, sender=cluster[0].address)
    assert (result.status, result.text) == (200, "ok")
    # Stored when the call answers; listed once the notifier has applied it (asynchronously).
    wait_for(lambda: len(hosts(node, service)) == 8000, 10, interval_s=0.05, message="sync applied")


def test_a_subscriber_of_one_member_is_pushed_a_change_registered_through_another(cluster):
    owner, _, watched = cluster
    service = service_owned_by(cluster, owner, "push-x")
    assert owner.api("POST", "/instance", {"serviceName": service, "ip": "10.0.10.1", "port": 1})
    listed_everywhere(cluster, service, {1})
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    try:
        subscribe(watched, service, receiver.getsockname()[1])
        started = time.monotonic()
        params = {"serviceName": service, "ip": "10.0.10.2", "port": 2}
        assert owner.api("POST", "/instance", params).text == "ok"
        packet, _, _ = receive(receiver, 5)
        assert time.monotonic() - started < 3.0
        data = json.loads(packet["data"])
        assert sorted(h["port"] for h in data["hosts"]) == [1, 2]
    finally:
        receiver.close()


def test_metrics_shows_the_replication_loops_and_the_membership_listener(cluster):
    from prometheus_client.parser import text_string_to_metric_families

    node = cluster[0]
    service = service_owned_by(cluster, node, "prom-cluster")  # so this member syncs it
    assert node.client().add_naming_instance(service, "10.0.9.1", 9, cluster_name="DEFAULT")
    peers = [n.address for n in cluster[1:]]
    loops = ["member-report", "distro-verify", "distro-dispatch-check"]
    loops += [f"distro-sync-{peer}" for peer in peers]

    def runs() -> dict[str, float] | None:
        text = node.request("GET", "/metrics", timeout=5).text
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "naming_loop_runs_total":
                    found[sample.labels["loop"]] = sample.value
                elif sample.name == "naming_listener_calls_total":
                    found[f"{sample.labels['source']}/{sample.labels['listener']}"] = sample.value
        return found if all(found.get(loop, 0) > 0 for loop in loops) else None

    try:
        found = wait_for(runs, 20, interval_s=0.5, message="the replication loops to run")
    except AssertionError:
        raise AssertionError(node.request("GET", "/metrics").text[:6000]) from None
    assert found is not None
    assert found.get("membership/ownership_changed", 0) > 0  # the map changed as peers came UP
