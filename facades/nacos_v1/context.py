"""What the Nacos v1 edge needs from the node, and the one installed instance of it.

The edge never imports the composition root (``node``): the root installs an object that has
this shape (``node.runtime.NodeRuntime``; mypy checks it at the ``install`` call) once at start,
and the handlers read it through :func:`current`. Tests install an in-memory node the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from accounts.auth import Authenticator
from distro.service import DistroCluster
from facades.nacos_v1.push import PushService
from naming.audit import AuditLog
from naming.domain import ServiceName
from naming.feed import ChangeFeed
from naming.operations import NamingOperations
from naming.registry import Registry


class NodeStatusSource(Protocol):
    """The operator's view of the node (``node.status``): data the edge renders as is."""

    def metrics(self) -> dict[str, Any]: ...

    def member(self, address: str | None = None) -> dict[str, Any]: ...

    def members(self) -> list[dict[str, Any]]: ...

    def connections(self) -> list[dict[str, Any]]: ...

    def raft(self) -> Mapping[str, Any]: ...

    def leader_http_address(self) -> str | None: ...


class Node(Protocol):
    @property
    def operations(self) -> NamingOperations: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def push(self) -> PushService: ...

    @property
    def auth(self) -> Authenticator | None: ...

    @property
    def cluster(self) -> DistroCluster | None: ...

    @property
    def report(self) -> NodeStatusSource: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def feed(self) -> ChangeFeed: ...

    @property
    def address(self) -> str: ...

    @property
    def http_port(self) -> int: ...

    def effective_status(self) -> str: ...

    def is_responsible(self, service: ServiceName) -> bool: ...


_current: Node | None = None


def install(node: Node | None) -> None:
    global _current
    _current = node


def current() -> Node:
    if _current is None:
        raise RuntimeError("no node installed (start the node with `manage.py runnode`)")
    return _current
