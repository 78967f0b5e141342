from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from consistency.datum import Datum, DatumKey, KeyKind
from consistency.notifier import Notifier
from consistency.service import Applied, DelegateConsistencyService
from distro.store import DistroStore
from naming.changes import EnsureService, RemoveInstances, UpsertInstance
from naming.codec import DATUM_CODEC
from naming.domain import Instance, InstanceKey, ServiceName

SVC = ServiceName("public", "DEFAULT_GROUP@@svc")


class Recording:
    def __init__(self, notifier: Notifier) -> None:
        self.store = DistroStore(notifier, DATUM_CODEC)
        self.keys: list[DatumKey] = []

    def submit(self, key: DatumKey, change: Any, timeout: float) -> Applied:
        self.keys.append(key)
        return self.store.submit(key, change, timeout)

    def get(self, key: DatumKey) -> Datum | None:
        return self.store.get(key)

    def items(self) -> Iterable[Datum]:
        return self.store.items()

    def is_available(self) -> bool:
        return True

    def status(self) -> Mapping[str, Any]:
        return {}


def delegate() -> tuple[DelegateConsistencyService, Recording, Recording]:
    notifier = Notifier()
    notifier.start()
    ephemeral, persistent = Recording(notifier), Recording(notifier)
    return DelegateConsistencyService(ephemeral, persistent, notifier), ephemeral, persistent


def test_ephemeral_keys_go_to_distro_and_everything_else_to_raft():
    service, ephemeral, persistent = delegate()
    try:
        service.submit(
            DatumKey.instances(SVC, True), UpsertInstance(Instance("1.1.1.1", 1), "g@@s")
        )
        service.submit(
            DatumKey.instances(SVC, False),
            UpsertInstance(Instance("1.1.1.1", 1, ephemeral=False), "g@@s"),
        )
        service.submit(DatumKey.meta(SVC), EnsureService())
        assert [k.kind for k in ephemeral.keys] == [KeyKind.EPHEMERAL_INSTANCES]
        assert [k.kind for k in persistent.keys] == [
            KeyKind.PERSISTENT_INSTANCES,
            KeyKind.SERVICE_META,
        ]
    finally:
        service.notifier.stop()


def test_distro_store_counts_revisions_and_keeps_only_newer_remote_datums():
    notifier = Notifier()
    store = DistroStore(notifier, DATUM_CODEC)
    key = DatumKey.instances(SVC, True)
    store.submit(key, UpsertInstance(Instance("1.1.1.1", 1), SVC.grouped), 1)
    applied = store.submit(key, UpsertInstance(Instance("1.1.1.2", 1), SVC.grouped), 1)
    assert applied.datum.revision == 2
    assert not store.apply_remote(Datum(key, None, 2))
    assert store.apply_remote(Datum(key, applied.datum.value, 3))
    assert store.get(key).revision == 3


def test_removing_every_instance_leaves_an_empty_list_not_a_missing_key():
    notifier = Notifier()
    store = DistroStore(notifier, DATUM_CODEC)
    key = DatumKey.instances(SVC, True)
    store.submit(key, UpsertInstance(Instance("1.1.1.1", 1), SVC.grouped), 1)
    store.submit(key, RemoveInstances((InstanceKey("DEFAULT", "1.1.1.1", 1),)), 1)
    datum = store.get(key)
    assert datum is not None and isinstance(datum.value, Mapping) and dict(datum.value) == {}


def test_datum_keys_round_trip_through_their_text_form():
    for key in (DatumKey.instances(SVC, True), DatumKey.meta(SVC), DatumKey.switches()):
        assert DatumKey.decode(key.encode()) == key
