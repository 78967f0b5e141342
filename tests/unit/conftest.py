"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node import runtime
from node.runtime import NodeConfig, NodeRuntime, in_memory_runtime


@pytest.fixture
def node() -> Iterator[NodeRuntime]:
    """An in-memory runtime (no sockets, auth off) installed as the node the edges serve."""
    rt = in_memory_runtime(NodeConfig(port=8848))
    runtime.install(rt)
    try:
        yield rt
    finally:
        runtime.install(None)
        rt.stop()
