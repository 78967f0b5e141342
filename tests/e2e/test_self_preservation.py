"""Self-preservation on a real node (issue #14 acceptance), driven as the Eureka facade drives the
core: instances registered over the v1 HTTP API with ``preserved.source=eureka`` and their lease
timings as ``preserved.*`` metadata, renewed with v1 beats.

The node measures renewals over 5 s windows (``NAMING_SELF_PRESERVATION_WINDOW_S``; Eureka's
minute would make the test minutes long); the instances renew every 0.5 s (10 expected per
window each, 100 for ten: self-preservation holds at 85 or fewer), turn unhealthy after 15 s
and are removed after 25 s, so a drop is seen (within a window and a second) before any of them
would expire. Phase 1: eight of ten stop at once, and stay registered and healthy past their
delete timeout while ``/metrics`` says self-preservation is on; a Nacos instance with the same
timings, stopped with them, expires as usual. Phase 2: the eight renew again, it lifts, one
stops: it expires on time and self-preservation stays off.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.harness import NodeProcess, running_node, wait_for

pytestmark = [pytest.mark.slow]

SERVICE = "SP-APP"
INTERVAL_S = 0.5
TIMEOUT_S = 15.0
DELETE_S = 25.0
EUREKA = {
    "preserved.source": "eureka",
    "preserved.heart.beat.interval": str(int(INTERVAL_S * 1000)),
    "preserved.heart.beat.timeout": str(int(TIMEOUT_S * 1000)),
    "preserved.ip.delete.timeout": str(int(DELETE_S * 1000)),
}
NACOS = {k: v for k, v in EUREKA.items() if k != "preserved.source"}
FLEET = [f"10.40.0.{n}" for n in range(1, 11)]
NACOS_IP = "10.40.1.1"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"NAMING_SELF_PRESERVATION_WINDOW_S": "5"}
    with running_node(Path(tmp_path_factory.mktemp("selfpres")), env=env) as started:
        yield started


class Beater:
    """Renews the instances in ``live`` every INTERVAL_S, each at its own phase (as clients
    started at different moments do), on a schedule of absolute times: a late beat does not
    push the later ones back. Owned by the test; ``stop()`` ends and joins the thread."""

    def __init__(self, node: NodeProcess, ips: list[str]) -> None:
        self._node = node
        self._ips = ips
        self.live: set[str] = set(ips)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-beater", daemon=True)

    def start(self) -> Beater:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        step = INTERVAL_S / len(self._ips)
        k = 0
        while not self._stop.is_set():
            ip = self._ips[k % len(self._ips)]
            due = start + k * step
            k += 1
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if ip not in self.live:
                continue
            result = self._node.api(
                "PUT", "/instance/beat", {"serviceName": SERVICE, "ip": ip, "port": 8080}
            )
            if result.status != 200 or '"code":10200' not in result.text.replace(" ", ""):
                self.failures.append(f"{ip}: {result.status} {result.text[:200]}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def register(node: NodeProcess, ip: str, metadata: dict[str, str]) -> None:
    result = node.api(
        "POST",
        "/instance",
        {
            "serviceName": SERVICE,
            "ip": ip,
            "port": 8080,
            "ephemeral": "true",
            "metadata": json.dumps(metadata),
        },
    )
    assert result.status == 200, result.text


def listed(node: NodeProcess) -> dict[str, bool]:
    result = node.api("GET", "/instance/list", {"serviceName": SERVICE, "healthyOnly": "false"})
    assert result.status == 200, result.text
    return {h["ip"]: h["healthy"] for h in result.json()["hosts"]}


def gauges(node: NodeProcess) -> dict[str, float]:
    result = node.request("GET", "/metrics")
    assert result.status == 200, result.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(result.text)
        for sample in family.samples
        if sample.name.startswith("naming_self_preservation")
    }


def test_eight_of_ten_stopping_are_held_and_one_of_ten_expires(node: NodeProcess):
    for ip in FLEET:
        register(node, ip, EUREKA)
    register(node, NACOS_IP, NACOS)
    beater = Beater(node, [*FLEET, NACOS_IP]).start()
    try:
        # Every instance counted over a whole window: 10 x 5 s / 0.5 s expected, and renewing.
        wait_for(
            lambda: gauges(node).get("naming_self_preservation_window_expected") == 100.0,
            30,
            interval_s=0.5,
            message="a whole window with the ten instances",
        )
        before = gauges(node)
        assert before["naming_self_preservation"] == 0.0, before
        assert before["naming_self_preservation_window_renewals"] > 85, before

        # Phase 1: eight (and the Nacos instance) stop at once.
        stopped = set(FLEET[2:]) | {NACOS_IP}
        beater.live -= stopped
        stopped_at = time.monotonic()
        wait_for(
            lambda: gauges(node)["naming_self_preservation"] == 1.0,
            TIMEOUT_S - 2,
            interval_s=0.25,
            message="self-preservation to engage",
        )
        # Past the delete timeout of the last beat: the Nacos one is gone, the eight are not.
        wait_for(
            lambda: NACOS_IP not in listed(node),
            DELETE_S + 10,
            interval_s=0.5,
            message="the Nacos instance to expire as usual",
        )
        time.sleep(max(0.0, stopped_at + DELETE_S + 3 - time.monotonic()))
        assert listed(node) == {ip: True for ip in FLEET}
        held = gauges(node)
        assert held["naming_self_preservation"] == 1.0, held
        assert held["naming_self_preservation_held_instances"] == 8.0, held
        assert held["naming_self_preservation_engaged_total"] == 1.0, held
        assert held["naming_self_preservation_window_renewals"] <= 85, held
        report = node.api("GET", "/operator/metrics").json()["selfPreservation"]
        assert report["active"] is True and report["thresholdRenewals"] == 85, report
        assert "EMERGENCY: self-preservation engaged" in node.log_path.read_text()

        # Phase 2: the eight renew again; it lifts. Then one stops: it expires on time.
        beater.live |= set(FLEET)
        wait_for(
            lambda: gauges(node)["naming_self_preservation"] == 0.0,
            20,
            interval_s=0.25,
            message="self-preservation to lift",
        )
        assert listed(node) == {ip: True for ip in FLEET}
        beater.live.discard(FLEET[0])
        stopped_at = time.monotonic()
        wait_for(
            lambda: listed(node).get(FLEET[0]) is False,
            TIMEOUT_S + 10,
            interval_s=0.5,
            message="the stopped instance to turn unhealthy",
        )
        assert time.monotonic() - stopped_at > TIMEOUT_S - 1
        wait_for(
            lambda: FLEET[0] not in listed(node),
            DELETE_S - TIMEOUT_S + 10,
            interval_s=0.5,
            message="the stopped instance to be removed",
        )
        after = gauges(node)
        assert after["naming_self_preservation"] == 0.0, after
        assert after["naming_self_preservation_engaged_total"] == 1.0, after
        assert listed(node) == {ip: True for ip in FLEET[1:]}
        assert not beater.failures, beater.failures[:5]
    finally:
        beater.stop()
