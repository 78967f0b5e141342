"""Registration time (replicated with the instance) and the prober's last checks (local)."""

from __future__ import annotations

import json
import socket

from django.test import Client

from consistency.datum import Datum, DatumKey
from distro.store import datum_checksum
from naming.changes import (
    Change,
    PatchInstance,
    RemoveInstances,
    SetHealth,
    UpdateInstance,
    UpsertInstance,
)
from naming.codec import DATUM_CODEC, decode_instance, encode_instance
from naming.commands import RegisterInstance
from naming.domain import (
    CheckType,
    ClusterConfig,
    HealthChecker,
    Instance,
    InstanceKey,
    ServiceName,
)

SVC = "DEFAULT_GROUP@@svc"
NAME = ServiceName("public", SVC)
KEY = InstanceKey("DEFAULT", "10.0.0.1", 1)
T0 = 1_764_000_000_000


def upsert(current, inst, at):
    return UpsertInstance(inst, SVC, at).apply(current)


def test_a_new_registration_takes_the_time_the_operation_read():
    value = upsert(None, Instance("10.0.0.1", 1), T0)
    assert value[KEY].registered_ms == T0
    snowflake = {"preserved.instance.id.generator": "snowflake"}
    value = upsert(value, Instance("10.0.0.2", 1, metadata=snowflake), T0 + 5)
    assert value[InstanceKey("DEFAULT", "10.0.0.2", 1)].registered_ms == T0 + 5


def test_re_register_update_patch_and_health_keep_the_registration_time():
    value = upsert(None, Instance("10.0.0.1", 1), T0)
    value = upsert(value, Instance("10.0.0.1", 1, weight=3.0), T0 + 1000)
    value = UpdateInstance(Instance("10.0.0.1", 1, weight=2.0)).apply(value)
    value = PatchInstance(KEY, enabled=False).apply(value)
    value = SetHealth(((KEY, False),)).apply(value)
    inst = value[KEY]
    assert (inst.weight, inst.enabled, inst.healthy) == (2.0, False, False)
    assert inst.registered_ms == T0


def test_an_unknown_registration_time_stays_unknown_on_re_register():
    """Stored before the time was kept: a re-register is still not the registration."""
    value = upsert(None, Instance("10.0.0.1", 1), 0)
    assert upsert(value, Instance("10.0.0.1", 1), T0)[KEY].registered_ms == 0


def test_re_registering_after_removal_is_a_new_registration():
    value = upsert(None, Instance("10.0.0.1", 1), T0)
    value = RemoveInstances((KEY,)).apply(value)
    assert upsert(value, Instance("10.0.0.1", 1), T0 + 9)[KEY].registered_ms == T0 + 9


def test_codec_round_trip_with_and_without_the_field():
    inst = Instance("10.0.0.1", 1, registered_ms=T0)
    encoded = encode_instance(inst)
    assert encoded["registeredMs"] == T0
    assert decode_instance(json.loads(json.dumps(encoded))) == inst
    del encoded["registeredMs"]  # a value stored before the field existed
    assert decode_instance(encoded).registered_ms == 0


def test_the_change_carries_the_time_through_its_log_encoding():
    change = UpsertInstance(Instance("10.0.0.1", 1), SVC, T0)
    assert Change.decode(json.loads(json.dumps(change.encode()))) == change
    old_entry = change.encode()
    del old_entry["registeredMs"]  # logged by an older version
    assert Change.decode(old_entry) == UpsertInstance(Instance("10.0.0.1", 1), SVC, 0)


def test_members_applying_the_same_change_have_equal_checksums():
    """Raft applies the logged change on each member; Distro ships the value: either way the
    registration time is the same everywhere, so the verify round sees no difference."""
    key = DatumKey.instances(NAME, True)
    logged = json.dumps(UpsertInstance(Instance("10.0.0.1", 1), SVC, T0).encode())
    on_a = Change.decode(json.loads(logged)).apply(None)
    on_b = Change.decode(json.loads(logged)).apply(None)
    shipped = DATUM_CODEC.decode_value(key.kind, DATUM_CODEC.encode_value(key.kind, on_a))
    sums = {datum_checksum(Datum(key, v, 1), DATUM_CODEC) for v in (on_a, on_b, shipped)}
    assert len(sums) == 1
    later = upsert(None, Instance("10.0.0.1", 1), T0 + 1)
    assert datum_checksum(Datum(key, later, 1), DATUM_CODEC) not in sums


# -- through the node: operations, the prober and the console (in process) ---------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_operation_reads_the_wall_clock_before_submitting(node):
    node.operations._wall_ms = lambda: T0
    node.operations.register_instance(RegisterInstance(NAME, Instance("10.0.0.1", 1)))
    node.operations._wall_ms = lambda: T0 + 60_000
    node.operations.register_instance(RegisterInstance(NAME, Instance("10.0.0.1", 1, weight=2)))
    node.operations.update_instance(RegisterInstance(NAME, Instance("10.0.0.1", 1, weight=3)))
    inst = node.operations.get_instance(NAME, KEY)
    assert (inst.weight, inst.registered_ms) == (3.0, T0)


def test_the_prober_records_each_last_check_and_the_console_shows_it(node):
    port = closed_port()
    ops = node.operations
    ops.register_instance(RegisterInstance(NAME, Instance("127.0.0.1", port, ephemeral=False)))
    ops.put_cluster(NAME, ClusterConfig("DEFAULT", HealthChecker(CheckType.TCP), port, True))
    node.health.check_once()
    last = ops.checks.last(NAME, InstanceKey("DEFAULT", "127.0.0.1", port))
    assert last is not None and last.ok is False and last.at_ms > 0
    page = Client().get("/nacos/console/service?name=svc").content.decode()
    assert "check: " in page and ": failed</time>" in page
    assert "not recorded" not in page
    assert 'class="local" datetime="' in page  # the registration time
    # A round with nothing to probe (no longer leader, or nothing left) forgets them all.
    ops.put_cluster(NAME, ClusterConfig("DEFAULT", HealthChecker(CheckType.NONE), port, True))
    node.health.check_once()
    assert len(ops.checks) == 0
    page = Client().get("/nacos/console/service?name=svc").content.decode()
    assert "not checked (no active check)" in page
