from __future__ import annotations

from naming.codec import EMPTY_INSTANCES, instance_set
from naming.domain import Instance, ServiceMeta, ServiceName
from naming.registry import ServiceView, select_hosts

SVC = ServiceName("public", "DEFAULT_GROUP@@svc")


def view(*instances: Instance, threshold: float = 0.0) -> ServiceView:
    return ServiceView(
        SVC,
        ServiceMeta(protect_threshold=threshold),
        instance_set(list(instances)),
        EMPTY_INSTANCES,
        1,
    )


def test_views_clamp_weights():
    v = view(Instance("1.1.1.1", 1, weight=0.001), Instance("1.1.1.2", 1, weight=0.0))
    assert [i.weight for i in v.instances()] == [0.01, 0.0]


def test_checksum_is_stable_and_changes_with_weight_health_and_threshold():
    base = view(Instance("1.1.1.1", 1), Instance("1.1.1.2", 1))
    same = view(Instance("1.1.1.2", 1), Instance("1.1.1.1", 1))
    assert base.checksum == same.checksum and len(base.checksum) == 32
    assert (
        view(Instance("1.1.1.1", 1, weight=2.0), Instance("1.1.1.2", 1)).checksum != base.checksum
    )
    assert (
        view(Instance("1.1.1.1", 1, healthy=False), Instance("1.1.1.2", 1)).checksum
        != base.checksum
    )
    assert (
        view(Instance("1.1.1.1", 1), Instance("1.1.1.2", 1), threshold=0.5).checksum
        != base.checksum
    )


def test_persistent_instances_come_before_ephemeral_ones_in_a_cluster():
    v = ServiceView(
        SVC,
        None,
        instance_set([Instance("1.1.1.1", 1)]),
        instance_set([Instance("1.1.1.9", 1, ephemeral=False)]),
        1,
    )
    assert [i.ip for i in v.instances()] == ["1.1.1.9", "1.1.1.1"]


def test_host_selection_puts_healthy_first_and_drops_disabled():
    v = view(
        Instance("1.1.1.1", 1, healthy=False),
        Instance("1.1.1.2", 1),
        Instance("1.1.1.3", 1, enabled=False),
    )
    assert [(i.ip, h) for i, h in select_hosts(v, (), False)] == [
        ("1.1.1.2", True),
        ("1.1.1.1", False),
    ]
    assert [i.ip for i, _ in select_hosts(v, (), True)] == ["1.1.1.2"]


def test_protect_threshold_counts_disabled_instances_and_fires_at_equality():
    v = view(Instance("1.1.1.1", 1, healthy=False), Instance("1.1.1.2", 1, healthy=False))
    assert [h for _, h in select_hosts(v, (), True)] == [True, True]
    half = view(Instance("1.1.1.1", 1, healthy=False), Instance("1.1.1.2", 1), threshold=0.5)
    assert [h for _, h in select_hosts(half, (), True)] == [True, True]
