"""Instance identity for foreign protocols (issue #14): a native id in the key, so two
instances on one ip:port (two Eureka instances, two airlift announcements) are two instances,
while Nacos clients' keys, ids and encodings stay as they were."""

from __future__ import annotations

from naming.changes import Change, RemoveInstances, UpsertInstance
from naming.codec import decode_instance, encode_instance
from naming.domain import Instance, InstanceKey


def test_two_native_ids_on_one_address_are_two_instances() -> None:
    a = Instance("10.0.0.1", 8080, native_id="host-a:app:8080")
    b = Instance("10.0.0.1", 8080, native_id="host-b:app:8080")
    value = UpsertInstance(b, "G@@APP", 2).apply(UpsertInstance(a, "G@@APP", 1).apply(None))
    assert value is not None and len(value) == 2
    stored = value[a.key]
    assert stored.instance_id == "host-a:app:8080"
    assert a.key != Instance("10.0.0.1", 8080).key
    assert a.key.datum_key().endswith(":host-a:app:8080")


def test_nacos_keys_and_encodings_are_unchanged() -> None:
    plain = Instance("10.0.0.2", 80)
    assert plain.key == InstanceKey("DEFAULT", "10.0.0.2", 80)
    assert plain.key.to_wire() == ["DEFAULT", "10.0.0.2", 80]
    assert "nativeId" not in encode_instance(plain)
    assert plain.key.datum_key() == "10.0.0.2:80:unknown:DEFAULT"


def test_native_ids_survive_the_codec_and_the_change_log() -> None:
    inst = Instance("10.0.0.3", 80, native_id="1f0c3a52-0000-4000-8000-000000000001")
    assert decode_instance(encode_instance(inst)) == inst
    change = RemoveInstances((inst.key, InstanceKey("DEFAULT", "10.0.0.4", 81)))
    again = Change.decode(change.encode())
    assert again == change
