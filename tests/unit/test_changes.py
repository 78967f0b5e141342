from __future__ import annotations

import pytest

from lib.errors import Conflict, InvalidParam, NotFound
from naming.changes import (
    Change,
    ClearValue,
    CreateService,
    EnsureService,
    PatchInstance,
    PinLeader,
    RemoveInstances,
    SetHealth,
    SetSwitch,
    UnpinLeader,
    UpdateInstance,
    UpdateMetadata,
    UpdateService,
    UpsertCluster,
    UpsertInstance,
)
from naming.domain import (
    CheckType,
    ClusterConfig,
    HealthChecker,
    Instance,
    InstanceKey,
    Selector,
    ServiceMeta,
)

SVC = "DEFAULT_GROUP@@svc"


def upsert(current, inst):
    return UpsertInstance(inst, SVC).apply(current)


def test_register_generates_the_simple_instance_id():
    value = upsert(None, Instance("10.0.0.1", 8080))
    assert (
        value[InstanceKey("DEFAULT", "10.0.0.1", 8080)].instance_id
        == "10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@svc"
    )


def test_reregister_keeps_instance_id_and_health_unless_marked():
    first = upsert(None, Instance("10.0.0.1", 1, healthy=False))
    again = upsert(first, Instance("10.0.0.1", 1, healthy=True, weight=3.0))
    inst = again[InstanceKey("DEFAULT", "10.0.0.1", 1)]
    assert (inst.healthy, inst.weight) == (False, 3.0)
    marked = upsert(first, Instance("10.0.0.1", 1, healthy=True, marked=True))
    assert marked[InstanceKey("DEFAULT", "10.0.0.1", 1)].healthy is True


def test_snowflake_ids_take_the_smallest_unused_number():
    meta = {"preserved.instance.id.generator": "snowflake"}
    value = upsert(None, Instance("10.0.0.1", 1, metadata=meta))
    value = upsert(value, Instance("10.0.0.2", 1, metadata=meta))
    value = RemoveInstances((InstanceKey("DEFAULT", "10.0.0.1", 1),)).apply(value)
    value = upsert(value, Instance("10.0.0.3", 1, metadata=meta))
    assert sorted(i.instance_id for i in value.values()) == ["0", "1"]


def test_apply_never_mutates_the_current_value():
    first = upsert(None, Instance("10.0.0.1", 1))
    upsert(first, Instance("10.0.0.2", 1))
    assert len(first) == 1


def test_strict_update_and_patch_need_an_existing_instance():
    with pytest.raises(InvalidParam, match="instance not exist"):
        UpdateInstance(Instance("10.0.0.1", 1)).apply(None)
    with pytest.raises(NotFound):
        PatchInstance(InstanceKey("DEFAULT", "10.0.0.1", 1), weight=2.0).apply(None)


def test_patch_changes_only_given_fields():
    value = upsert(None, Instance("10.0.0.1", 1, weight=4.0, metadata={"k": "v"}))
    value = PatchInstance(InstanceKey("DEFAULT", "10.0.0.1", 1), enabled=False).apply(value)
    inst = next(iter(value.values()))
    assert (inst.weight, dict(inst.metadata), inst.enabled) == (4.0, {"k": "v"}, False)


def test_set_health_and_remove_ignore_unknown_instances():
    value = upsert(None, Instance("10.0.0.1", 1))
    key = InstanceKey("DEFAULT", "10.0.0.1", 1)
    ghost = InstanceKey("DEFAULT", "10.9.9.9", 1)
    value = SetHealth(((key, False), (ghost, False))).apply(value)
    assert not value[key].healthy and len(value) == 1
    assert len(RemoveInstances((ghost,)).apply(value)) == 1


def test_metadata_batch_merges_then_deletes():
    value = upsert(None, Instance("10.0.0.1", 1, metadata={"a": "1"}))
    key = InstanceKey("DEFAULT", "10.0.0.1", 1)
    value = UpdateMetadata((key,), {"b": "2"}, delete=False).apply(value)
    value = UpdateMetadata(None, {"a": ""}, delete=True).apply(value)
    assert dict(value[key].metadata) == {"b": "2"}


def test_service_meta_changes():
    meta = CreateService(0.5, {"t": "a"}, Selector(), SVC).apply(None)
    assert isinstance(meta, ServiceMeta) and meta.protect_threshold == 0.5
    with pytest.raises(Conflict):
        CreateService(0.5, {}, Selector(), SVC).apply(meta)
    assert EnsureService().apply(meta) is meta
    with pytest.raises(NotFound):
        UpdateService(0.1, None, None, create=False).apply(None)
    updated = UpdateService(0.1, {}, None, create=False).apply(meta)
    assert (updated.protect_threshold, dict(updated.metadata)) == (0.1, {})
    with_cluster = UpsertCluster(ClusterConfig("c1", HealthChecker(CheckType.NONE))).apply(updated)
    assert with_cluster.clusters["c1"].health_checker.type is CheckType.NONE
    assert ClearValue().apply(with_cluster) is None


ALL_CHANGES = [
    UpsertInstance(Instance("10.0.0.1", 1, metadata={"a": "b"}, ephemeral=False), SVC),
    UpdateInstance(Instance("10.0.0.1", 1, weight=2.5)),
    PatchInstance(InstanceKey("c", "10.0.0.1", 1), weight=1.0, metadata={"x": "y"}),
    RemoveInstances((InstanceKey("DEFAULT", "1.1.1.1", 2),)),
    SetHealth(((InstanceKey("DEFAULT", "1.1.1.1", 2), False),)),
    UpdateMetadata(None, {"k": "v"}, delete=True),
    ClearValue(),
    CreateService(0.2, {"m": "n"}, Selector("label", "INSTANCE.metadata.a=b"), SVC),
    EnsureService(),
    UpdateService(0.3, None, Selector(), create=True),
    UpsertCluster(ClusterConfig("c1", HealthChecker(CheckType.HTTP, path="/h"), 81, False)),
    SetSwitch("clientBeatInterval", "3000"),
    PinLeader("c1", "10.0.0.1:1"),
    UnpinLeader(""),
]


@pytest.mark.parametrize("change", ALL_CHANGES, ids=lambda c: c.type_name)
def test_every_change_survives_its_json_round_trip(change):
    """The Raft journal stores changes as JSON: what is applied after a replay must be equal."""
    import json

    assert Change.decode(json.loads(json.dumps(change.encode()))) == change
