"""Helpers shared by the Distro cluster tests: ownership, listing, and signed peer calls."""

from __future__ import annotations

import itertools
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from distro.mapper import DistroMapper
from distro.signing import sign
from lib.keys import peer_key as derive_key
from testkit.harness import CLUSTER_SECRET, HttpResult, NodeProcess

GROUP = "DEFAULT_GROUP@@"


def owner_address(nodes: list[NodeProcess], service: str) -> str:
    return DistroMapper.of(nodes[0].address, [n.address for n in nodes]).owner(GROUP + service)


def service_owned_by(nodes: list[NodeProcess], owner: NodeProcess, prefix: str) -> str:
    for n in itertools.count():
        name = f"{prefix}-{n}"
        if owner_address(nodes, name) == owner.address:
            return name
    raise AssertionError("unreachable")


def hosts(node: NodeProcess, service: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    result = node.api("GET", "/instance/list", {"serviceName": service}, timeout=timeout)
    assert result.status == 200, result.text
    return list(result.json()["hosts"])


def ports(node: NodeProcess, service: str) -> set[int]:
    return {h["port"] for h in hosts(node, service)}


def ports_are(node: NodeProcess, service: str, expected: set[int]) -> bool:
    return ports(node, service) == expected


def metrics(node: NodeProcess) -> dict[str, Any]:
    return dict(node.request("GET", "/nacos/v1/ns/operator/metrics", timeout=5).json())


def signed_call(
    node: NodeProcess,
    method: str,
    path: str,
    body: bytes = b"",
    secret: str = CLUSTER_SECRET,
    sender: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[HttpResult, dict[str, str]]:
    """A peer request signed like a member would; returns the answer and the signed headers."""
    signed = sign(derive_key(secret), method, path, body, sender or node.address, node.address)
    all_headers = {**(headers or {}), **signed}
    return raw_call(node, method, path, body, all_headers), all_headers


def raw_call(
    node: NodeProcess, method: str, path: str, body: bytes, headers: dict[str, str]
) -> HttpResult:
    """``path`` goes out byte for byte (a signature covers it exactly)."""
    request = urllib.request.Request(
        node.base + path, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HttpResult(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, exc.read(), dict(exc.headers))


class Beater:
    """Sends a beat for one instance every ``interval_s`` through the given members, in turn,
    and records every answer; stops within one interval of ``stop()``."""

    def __init__(
        self, nodes: list[NodeProcess], service: str, ip: str, port: int, interval_s: float = 2.0
    ) -> None:
        self.nodes = nodes
        self.params = {"serviceName": service, "ip": ip, "port": port, "clusterName": "DEFAULT"}
        self.interval_s = interval_s
        self.answers: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Beater:
        self._thread.start()
        return self

    def _run(self) -> None:
        for node in itertools.cycle(self.nodes):
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                result = node.api("PUT", "/instance/beat", self.params, timeout=5)
                self.answers.append((node.address, result.status))
            except OSError as exc:
                self.answers.append((node.address, -1))
                del exc
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
