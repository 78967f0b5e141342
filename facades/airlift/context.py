"""What the airlift discovery edge needs from the node, its settings, and its counters.

The edge never imports the composition root: ``node.runtime.install`` hands it the node (mypy
checks the shape) and the settings (``NodeConfig.airlift``, filled by ``runnode`` from
``NAMING_AIRLIFT_*``). Tests install an in-memory node the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from naming.operations import NamingOperations
from naming.registry import Registry

# airlift's ``discovery.max-age``: an announcement lives this long after the PUT that made it.
DEFAULT_MAX_AGE_S = 30

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AirliftSettings:
    environment: str = "production"
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_age_s: int = DEFAULT_MAX_AGE_S

    @cached_property
    def networks(self) -> tuple[Network, ...]:
        # Validated by NamingSettings.problems() before a node starts.
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted_networks)

    def trusts(self, address: str) -> bool:
        """Whether a write from ``address`` (the TCP peer) is taken."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    @property
    def announce_every_s(self) -> int:
        """The ``Cache-Control: max-age`` a PUT is answered with. airlift's client re-announces
        after 0.8 x that, so a third of the lease gives it airlift's own rhythm (8 s against
        a 30 s lease, three tries before expiry); the lease itself would leave 6 s of slack."""
        return max(1, self.max_age_s // 3)

    @property
    def lookup_every_s(self) -> int:
        """The ``Cache-Control: max-age`` of a lookup: the client's own default refresh (10 s),
        never longer than the lease."""
        return max(1, min(10, self.max_age_s))


@dataclass
class AirliftStats:
    """Counted by request threads (approximate under concurrency: metrics, not invariants);
    ``operator/metrics`` → ``airlift`` and ``/metrics`` show them."""

    announcements: int = 0  # accepted PUTs
    registered: int = 0  # instances created or changed by a PUT
    renewed: int = 0  # instances a PUT found unchanged (a beat)
    removed: int = 0  # instances a PUT no longer listed, or a DELETE took away
    deletes: int = 0  # DELETE /v1/announcement/{node}
    statics: int = 0  # static announcements created
    lookups: int = 0
    not_modified: int = 0  # lookups answered 304
    untrusted: int = 0  # writes refused: not from a trusted network
    wrong_environment: int = 0
    bad_requests: int = 0  # any other 4xx

    def as_json(self) -> dict[str, int]:
        return {
            "announcements": self.announcements,
            "registered": self.registered,
            "renewed": self.renewed,
            "removed": self.removed,
            "deletes": self.deletes,
            "statics": self.statics,
            "lookups": self.lookups,
            "notModified": self.not_modified,
            "untrusted": self.untrusted,
            "wrongEnvironment": self.wrong_environment,
            "badRequests": self.bad_requests,
        }


class Node(Protocol):
    @property
    def operations(self) -> NamingOperations: ...

    @property
    def registry(self) -> Registry: ...

    def effective_status(self) -> str: ...


@dataclass
class _Installed:
    node: Node
    settings: AirliftSettings
    stats: AirliftStats = field(default_factory=AirliftStats)


_current: _Installed | None = None


def install(node: Node | None, settings: AirliftSettings | None = None) -> None:
    global _current
    _current = None if node is None else _Installed(node, settings or AirliftSettings())


def current() -> Node:
    return _installed().node


def settings() -> AirliftSettings:
    return _installed().settings


def stats() -> AirliftStats:
    return _installed().stats


def _installed() -> _Installed:
    if _current is None:
        raise RuntimeError("no node installed (start the node with `manage.py runnode`)")
    return _current
