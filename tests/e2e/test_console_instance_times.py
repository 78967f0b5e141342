"""The service-detail page through a real node: each instance's registration time (kept by an
update) and, for a persistent instance, the time and result of the prober's last check."""

from __future__ import annotations

import datetime as dt
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testkit.harness import NodeProcess, running_node, wait_for
from tests.cluster.test_console_cluster import console_login

C = "/nacos/console/"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("instance-times"))) as n:
        yield n


def console(node: NodeProcess) -> requests.Session:
    session = requests.Session()
    console_login(session, node)
    return session


def row(session: requests.Session, node: NodeProcess, service: str, ip: str, port: int) -> str:
    page = session.get(node.base + C + "service", params={"name": service}, timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert "not recorded" not in page.text
    found = re.search(
        rf'<tr [^>]*data-instance="{re.escape(ip)}:{port}">(.*?)</tr>', page.text, re.S
    )
    assert found is not None, page.text
    return found.group(1)


def registered(cells: str) -> str:
    found = re.search(r'<td class="registered"><time class="local" datetime="([^"]+)"', cells)
    assert found is not None, cells
    return found.group(1)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_registration_time_is_shown_and_an_update_keeps_it(node):
    before = time.time()
    params = {"serviceName": "timed", "ip": "10.9.0.1", "port": 7001, "weight": 1}
    assert node.api("POST", "/instance", params).text == "ok"
    session = console(node)
    first = registered(row(session, node, "timed", "10.9.0.1", 7001))
    stamp = dt.datetime.fromisoformat(first).timestamp()  # UTC, "...Z"
    assert before - 5 <= stamp <= time.time() + 5, first
    time.sleep(1.1)  # a new registration would now carry a later second
    assert node.api("PUT", "/instance", {**params, "weight": 3}).text == "ok"
    assert node.api("POST", "/instance", {**params, "weight": 4}).text == "ok"  # re-register
    cells = row(session, node, "timed", "10.9.0.1", 7001)
    assert '<td class="weight">4.0</td>' in cells
    assert registered(cells) == first


def test_a_persistent_instance_on_a_closed_port_shows_its_last_failed_check(node):
    port = closed_port()
    params = {"serviceName": "probed", "ip": "127.0.0.1", "port": port, "ephemeral": "false"}
    assert node.api("POST", "/instance", params).text == "ok"
    session = console(node)

    def checked() -> str | None:
        cells = row(session, node, "probed", "127.0.0.1", port)
        return cells if "failed</time>" in cells else None

    cells = wait_for(checked, 30, interval_s=0.5, message="the prober's last check is shown")
    assert cells is not None
    assert re.search(r'check: <time datetime="[^"]+Z" title="[^"]+Z">[^<]*: failed</time>', cells)
    registered(cells)
