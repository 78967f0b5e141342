"""The Distro store: ephemeral instance lists, in memory, one revision counter per key.

On the responsible node a change is applied under the key's lock (so two registrations to one
service never lose each other), gets revision + 1 and goes to the notifier while the lock is
still held, so the notifier sees a key's revisions in order. Datums from peers are stored only
when newer, except when a verify round pulls them from the key's owner: the owner is
authoritative, so its copy replaces ours whenever the contents differ (two members that both
believed they owned a key for a moment may have written the same revision).
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from consistency.datum import Datum, DatumCodec, DatumKey, dumps
from consistency.notifier import Notifier
from consistency.service import Applied, Change

_STRIPES = 64


def datum_checksum(datum: Datum, codec: DatumCodec) -> str:
    """Content checksum over the codec's canonical form, independent of instance order (the
    verify round compares these)."""
    encoded = codec.canonical_value(datum.key.kind, datum.value)
    return hashlib.md5(dumps(encoded).encode(), usedforsecurity=False).hexdigest()


class DistroStore:
    def __init__(
        self,
        notifier: Notifier,
        codec: DatumCodec,
        on_local_change: Callable[[DatumKey], None] | None = None,
    ) -> None:
        self._notifier = notifier
        self.codec = codec  # the core's value codec (checksums; peer payloads use it too)
        self._data: dict[DatumKey, Datum] = {}
        self._checksums: dict[DatumKey, tuple[Datum, str]] = {}
        # Striped locks: per-key exclusion without a lock object per key. crc32 rather than
        # hash() only so that the stripe of a key is the same in every run (easier to reason).
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._on_local_change = on_local_change
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
        if self._on_local_change is not None:
            self._on_local_change(key)
        return Applied(datum, ticket)

    def apply_remote(self, datum: Datum, authoritative: bool = False) -> bool:
        """Store a datum from a peer if it is newer than ours (or, when ``authoritative``,
        whenever its contents differ); True when stored."""
        with self._lock(datum.key):
            current = self._data.get(datum.key)
            if current is not None:
                if authoritative:
                    if current.value == datum.value:
                        return False
                elif current.revision >= datum.revision:
                    return False
            self._data[datum.key] = datum
            self._notifier.notify(datum)
            return True

    def apply_remote_ticket(self, datum: Datum) -> int:
        """Store the owner's answer to our change; a notifier ticket to wait on either way."""
        self.apply_remote(datum)
        return self._notifier.notify_barrier()

    def drop(self, key: DatumKey) -> bool:
        """Forget a value its owner no longer has (verify); the revision stays."""
        with self._lock(key):
            current = self._data.get(key)
            if current is None or current.value is None:
                return False
            datum = Datum(key, None, current.revision)
            self._data[key] = datum
            self._notifier.notify(datum)
            return True

    def get(self, key: DatumKey) -> Datum | None:
        datum = self._data.get(key)
        if datum is None or datum.value is None:
            return None
        return datum

    def raw(self, key: DatumKey) -> Datum | None:
        """The latest datum including a tombstone (what replication sends)."""
        return self._data.get(key)

    def items(self) -> Iterable[Datum]:
        return [d for d in list(self._data.values()) if d.value is not None]

    def checksum(self, datum: Datum) -> str:
        cached = self._checksums.get(datum.key)
        if cached is not None and cached[0] is datum:
            return cached[1]
        value = datum_checksum(datum, self.codec)
        self._checksums[datum.key] = (datum, value)
        return value

    def is_available(self) -> bool:
        return self.ready

    def status(self) -> Mapping[str, Any]:
        return {"keys": len(self._data), "ready": self.ready}
