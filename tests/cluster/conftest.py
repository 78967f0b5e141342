from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.netns import NetnsLab


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    """Three test hosts in network namespaces (root and ``ip`` needed, as in CI)."""
    created = NetnsLab(3)
    try:
        yield created
    finally:
        created.close()
