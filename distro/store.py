"""The Distro store: ephemeral instance lists, in memory, one revision counter per key.

On the responsible node a change is applied under the key's lock (so two registrations to one
service never lose each other), gets revision + 1 and goes to the notifier while the lock is
still held, so the notifier sees a key's revisions in order. Peer replication (issue #3) stores
remote datums only when they are newer.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from consistency.datum import Datum, DatumKey
from consistency.notifier import Notifier
from consistency.service import Applied, Change

_STRIPES = 64


class DistroStore:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._data: dict[DatumKey, Datum] = {}
        # Striped locks: per-key exclusion without a lock object per key. crc32 rather than
        # hash() only so that the stripe of a key is the same in every run (easier to reason).
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self.ready = True

    def _lock(self, key: DatumKey) -> threading.Lock:
        return self._locks[zlib.crc32(key.service.encode()) % _STRIPES]

    def submit(self, key: DatumKey, change: Change, timeout: float) -> Applied:
        with self._lock(key):
            current = self._data.get(key)
            value = change.apply(None if current is None else current.value)
            datum = Datum(key, value, (0 if current is None else current.revision) + 1)
            # Tombstones stay so a revision never goes backwards for a key (peer sync relies on it).
            self._data[key] = datum
            ticket = self._notifier.notify(datum)
        return Applied(datum, ticket)

    def apply_remote(self, datum: Datum) -> bool:
        """Store a datum from a peer if it is newer than ours; True when stored."""
        with self._lock(datum.key):
            current = self._data.get(datum.key)
            if current is not None and current.revision >= datum.revision:
                return False
            self._data[datum.key] = datum
            self._notifier.notify(datum)
            return True

    def get(self, key: DatumKey) -> Datum | None:
        datum = self._data.get(key)
        if datum is None or datum.value is None:
            return None
        return datum

    def items(self) -> Iterable[Datum]:
        return [d for d in list(self._data.values()) if d.value is not None]

    def is_available(self) -> bool:
        return self.ready

    def status(self) -> Mapping[str, Any]:
        return {"keys": len(self._data), "ready": self.ready}
