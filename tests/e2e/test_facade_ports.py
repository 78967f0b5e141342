"""Protocol facades listen on ports of their own (issue #14): off by default, each port serves
its facade's paths only, and the main port serves none of them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import ROOT, NodeProcess, free_port, running_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"NAMING_EUREKA_PORT": str(free_port()), "NAMING_AIRLIFT_PORT": str(free_port())}
    with running_node(tmp_path_factory.mktemp("facade-ports"), env=env) as started:
        yield started


@pytest.mark.parametrize("facade", ["eureka", "airlift"])
def test_a_facade_port_serves_no_nacos_path(node: NodeProcess, facade: str) -> None:
    answer = node.request(
        "GET", "/nacos/v1/ns/instance/list", {"serviceName": "x"}, base=node.facade_base(facade)
    )
    assert answer.status == 404
    assert "no such path on this port" in answer.text


@pytest.mark.parametrize("path", ["/eureka/apps", "/eureka/v2/apps/", "/v1/service"])
def test_the_main_port_serves_no_facade_path(node: NodeProcess, path: str) -> None:
    answer = node.request("GET", path)
    assert answer.status == 404 and "no such path on this port" in answer.text
    assert node.request("GET", "/nacos/v1/ns/operator/metrics").json()["status"] == "UP"


def test_a_port_clash_is_refused_with_a_message(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "runnode",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--eureka-port",
            str(port),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert b"already in use by this node" in done.stderr
