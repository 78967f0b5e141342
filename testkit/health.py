"""Beat expiry without threads or sockets: a ``HealthServices`` over an in-memory Distro store
and registry, on a clock the test moves (unit and fault tests call ``sweep_once`` by hand)."""

from __future__ import annotations

from consistency.datum import DatumKey
from consistency.notifier import Notifier
from distro.store import DistroStore
from naming.changes import Change
from naming.codec import DATUM_CODEC
from naming.health import BeatTable, HealthServices, HealthSettings
from naming.registry import Registry


def in_memory_health(
    clock: list[float],
    owned: list[bool] | None = None,
    settings: HealthSettings | None = None,
    ownership_events: bool = False,
) -> tuple[HealthServices, DistroStore, Notifier]:
    """``clock[0]`` is the time; ``owned[0]`` whether this member owns every service (None:
    always). Submits apply at once and are delivered to the registry before they return."""
    notifier = Notifier()
    store = DistroStore(notifier, DATUM_CODEC)
    registry = Registry(lambda key: None if (d := store.get(key)) is None else d.value)
    notifier.add_listener("registry", registry.on_datum)

    def submit(key: DatumKey, change: Change) -> object:
        applied = store.submit(key, change, 5.0)
        notifier.drain()
        return applied

    health = HealthServices(
        registry,
        BeatTable(clock=lambda: clock[0]),
        submit,
        lambda _service: owned is None or owned[0],
        settings or HealthSettings(),
        clock=lambda: clock[0],
        ownership_events=ownership_events,
    )
    return health, store, notifier
