from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, running_node


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One real standalone node per test worker, for the fast end-to-end scenarios."""
    with running_node(Path(tmp_path_factory.mktemp("node"))) as started:
        yield started


@pytest.fixture
def svc(request: pytest.FixtureRequest) -> str:
    """A fresh service name per test (the session node is shared)."""
    import secrets

    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{secrets.token_hex(3)}"
