"""What the Nacos 2.x gRPC edge needs from the node (``node.runtime.NodeRuntime`` has it)."""

from __future__ import annotations

from typing import Protocol

from accounts.auth import Authenticator
from naming.operations import NamingOperations
from naming.registry import Registry


class Node(Protocol):
    @property
    def operations(self) -> NamingOperations: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def auth(self) -> Authenticator | None: ...

    @property
    def address(self) -> str: ...

    def effective_status(self) -> str: ...
