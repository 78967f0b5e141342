"""Test hosts in network namespaces, for faults that cross a network (needs root and `ip`).

Each host is a namespace with one veth into a bridge in the root namespace; the test process
reaches every host through the bridge. ``isolate(i)`` takes host i's link down: it keeps running
and keeps serving anything inside its own namespace, but neither peers nor the test process can
reach it until ``heal(i)``. Addresses are 10.231.<k>.<i+1> on our own bridge only; everything is
removed in ``close()``.
"""

from __future__ import annotations

import secrets
import subprocess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class NetnsLab:
    def __init__(self, hosts: int) -> None:
        self.tag = secrets.token_hex(3)
        self.subnet = 10 + secrets.randbelow(200)
        self.bridge = f"nbr{self.tag}"
        self.namespaces = [f"nlab-{self.tag}-{i}" for i in range(hosts)]
        self.links = [f"nh{self.tag}{i}" for i in range(hosts)]
        self.addresses = [f"10.231.{self.subnet}.{i + 1}" for i in range(hosts)]
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"10.231.{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for ns, link, address in zip(self.namespaces, self.links, self.addresses, strict=True):
                peer = link.replace("nh", "nn", 1)
                _ip("netns", "add", ns)
                _ip("link", "add", link, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", peer)
                _ip("-n", ns, "link", "set", peer, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("link", "set", link, "master", self.bridge)
                _ip("link", "set", link, "up")
        except Exception:
            self.close()
            raise

    def host(self, i: int) -> tuple[str, tuple[str, ...]]:
        return self.addresses[i], ("ip", "netns", "exec", self.namespaces[i])

    def isolate(self, i: int) -> None:
        _ip("link", "set", self.links[i], "down")

    def heal(self, i: int) -> None:
        _ip("link", "set", self.links[i], "up")

    def close(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
