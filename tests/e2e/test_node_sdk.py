"""Spec §F scenarios 15-20 with the real Nacos Node SDK (npm ``nacos@2.6.3``).

The SDK identifies itself as a Java 1.0.0 client: grouped names, UDP push, credentials as
parameters on every request. ``node_client/driver.js`` runs one scenario and prints JSON lines.
"""

from __future__ import annotations

import fcntl
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, running_node, wait_for

DRIVER_DIR = Path(__file__).resolve().parent / "node_client"

pytestmark = pytest.mark.xdist_group("node-sdk")


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    """Installs the pinned SDK once (npm registry); fails loudly when Node.js is missing.

    A file lock and a marker written after a complete install keep two test workers from
    running ``npm ci`` (which first deletes node_modules) under each other's feet.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(
            "Node.js and npm are required for the Node SDK tests (apt-get install nodejs npm)"
        )
    marker = DRIVER_DIR / "node_modules" / ".installed"
    with open(DRIVER_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=DRIVER_DIR,
                check=True,
                timeout=600,
            )
            marker.write_text("ok")
    return DRIVER_DIR


@pytest.fixture(scope="module")
def js_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node of its own: one test changes the clientBeatInterval switch."""
    with running_node(Path(tmp_path_factory.mktemp("node-sdk"))) as node:
        yield node


class Driver:
    def __init__(self, node: NodeProcess, scenario: str, service: str) -> None:
        self.proc = subprocess.Popen(
            [
                "node",
                str(DRIVER_DIR / "driver.js"),
                node.address,
                "nacos",
                node.admin_password,
                scenario,
                service,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"raw": line})

    def next(self, timeout: float) -> dict:
        item = self.lines.get(timeout=timeout)
        assert "error" not in item, item["error"]
        return item

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def test_f16_f19_f20_register_list_status_and_service_list(
    node_sdk: Path, js_node: NodeProcess, svc: str
):
    driver = Driver(js_node, "register-list", svc)
    try:
        hosts = driver.next(30)["hosts"]
        assert [(h["ip"], h["port"], h["serviceName"]) for h in hosts] == [
            ("10.16.0.1", 8080, f"DEFAULT_GROUP@@{svc}")
        ]
        assert driver.next(10) == {"status": "UP"}
        services = driver.next(10)["services"]
        assert svc in services["data"] and services["count"] >= 1
        driver.next(10)  # the SDK keeps its last non-empty list (spec E.2): ask the server
        assert driver.proc.wait(30) == 0
        listed = js_node.api("GET", "/instance/list", {"serviceName": svc}).json()
        assert listed["hosts"] == []
    finally:
        driver.stop()


def test_f17_subscriber_is_pushed_within_two_seconds_and_acks(
    node_sdk: Path, js_node: NodeProcess, svc: str
):
    js_node.api("POST", "/instance", {"serviceName": svc, "ip": "10.17.0.1", "port": 80})
    before = js_node.request("GET", "/nacos/v1/ns/operator/push/state").json()["succeed"]
    driver = Driver(js_node, "subscribe", svc)
    try:
        first = driver.next(30)["hosts"]
        assert [h["ip"] for h in first] == ["10.17.0.1"]
        time.sleep(0.5)
        registered_at = time.time() * 1000
        js_node.api("POST", "/instance", {"serviceName": svc, "ip": "10.17.0.2", "port": 80})
        update = driver.next(5)
        assert sorted(h["ip"] for h in update["hosts"]) == ["10.17.0.1", "10.17.0.2"]
        # The SDK polls every 10 s once subscribed: an update within 2 s came by push.
        assert update["at"] - registered_at < 2500
        wait_for(
            lambda: (
                js_node.request("GET", "/nacos/v1/ns/operator/push/state").json()["succeed"]
                > before
            ),
            5,
            message="the SDK's push-ack",
        )
    finally:
        driver.stop()


@pytest.mark.slow
def test_f18_beats_follow_the_client_beat_interval_switch(
    node_sdk: Path, js_node: NodeProcess, svc: str
):
    switched = js_node.api(
        "PUT", "/operator/switches", {"entry": "clientBeatInterval", "value": "2000"}
    )
    assert switched.text == "ok"

    def beats() -> int:
        return int(js_node.request("GET", "/nacos/v1/ns/operator/metrics").json()["beatCount"])

    driver = Driver(js_node, "beat", svc)
    try:
        assert driver.next(30) == {"registered": True}
        start = beats()
        wait_for(lambda: beats() > start, 20, interval_s=0.2, message="first beat")
        first = beats()
        time.sleep(8.5)
        during = beats() - first
        assert 3 <= during <= 6, during  # every ~2 s, not the default 5 s
    finally:
        driver.stop()
        js_node.api("PUT", "/operator/switches", {"entry": "clientBeatInterval", "value": "5000"})
