"""Renewals taken on a member that does not own the service go to the owner
(``NamingOperations.renew`` → the distro ``touch`` peer call → ``renewed_here``), which alone
keeps beats and expires; errors come back as the core's errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lib.errors import InvalidParam
from naming import commands as s
from naming.domain import Instance, InstanceKey, ServiceName
from node.runtime import NodeConfig, NodeRuntime, in_memory_runtime

SVC = ServiceName("public", "DEFAULT_GROUP@@renewed")


@pytest.fixture
def pair() -> Iterator[tuple[NodeRuntime, NodeRuntime]]:
    here, owner = in_memory_runtime(NodeConfig(port=8848)), in_memory_runtime(NodeConfig(port=8849))
    here.operations.owns = lambda service: False
    here.operations.remote_renew = lambda service, body: owner.operations.renewed_here(body)
    try:
        yield here, owner
    finally:
        here.stop()
        owner.stop()


def test_a_renewal_on_a_non_owner_reaches_the_owners_beats(
    pair: tuple[NodeRuntime, NodeRuntime],
) -> None:
    here, owner = pair
    inst = Instance("10.4.0.1", 80, native_id="i-1")
    owner.operations.register_instance(s.RegisterInstance(SVC, inst))
    before = here.operations.beat_count, owner.operations.beat_count
    result = here.operations.renew(SVC, inst.key)
    assert result.found
    assert here.operations.beat_count == before[0]  # not taken here
    assert owner.operations.beat_count == before[1] + 1
    assert owner.beats.last(SVC, inst.key) is not None
    assert here.beats.last(SVC, inst.key) is None


def test_an_unknown_instance_is_not_found_on_the_owner(
    pair: tuple[NodeRuntime, NodeRuntime],
) -> None:
    here, _ = pair
    assert not here.operations.renew(SVC, InstanceKey("DEFAULT", "10.4.0.9", 80, "gone")).found


def test_garbage_from_a_peer_is_answered_as_an_error(pair: tuple[NodeRuntime, NodeRuntime]) -> None:
    here, owner = pair
    here.operations.remote_renew = lambda service, body: owner.operations.renewed_here(b"[1]")
    with pytest.raises(InvalidParam):
        here.operations.renew(SVC, InstanceKey("DEFAULT", "10.4.0.1", 80))


def test_the_owner_takes_its_own_renewals_locally(pair: tuple[NodeRuntime, NodeRuntime]) -> None:
    _, owner = pair
    inst = Instance("10.4.0.2", 80)
    owner.operations.register_instance(s.RegisterInstance(SVC, inst))
    assert owner.operations.renew(SVC, inst.key).found  # no remote hook installed
