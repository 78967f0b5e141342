"""The replicated state machine for persistent data: deterministic apply only.

pysyncobj calls :meth:`ReplicatedState.apply_change` on every member, in log order, on its tick
thread (the same entries again when the journal is replayed after a restart). ``apply`` decodes
the change, runs its pure ``apply`` on the current value and stores the JSON form; nothing in it
reads a clock, draws a random number or does I/O. The notifier hand-off afterwards is a local side
effect that does not feed back into the state (hashicorp/raft ``fsm.go``).

What pysyncobj serializes into its dump is exactly the attributes set after
``SyncObjConsumer.__init__``: ``values`` (JSON-able). The decoded cache and the callback are set
before it, so they are neither pickled nor restored.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pysyncobj import SyncObjConsumer, replicated  # type: ignore[import-untyped]

from consistency.datum import Datum, DatumKey, decode_value, encode_value
from naming.changes import Change
from naming.errors import NamingError

# Result of an apply as it travels back to the submitter: (revision, error, local ticket).
ApplyResult = tuple[int, tuple[int, str, str] | None, int]


class ReplicatedState(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self, on_applied: Callable[[Datum], int]) -> None:
        # Set before super().__init__(): pysyncobj then treats them as non-state.
        self._on_applied = on_applied
        self._cache: dict[DatumKey, Datum] = {}
        self._cache_lock = threading.Lock()
        super().__init__()
        self.values: dict[str, list[Any]] = {}  # encoded key -> [revision, encoded value]

    @replicated  # type: ignore[misc,untyped-decorator]
    def apply_change(self, key_text: str, change_json: str) -> ApplyResult:
        key = DatumKey.decode(key_text)
        current = self._datum(key)
        change = Change.decode(json.loads(change_json))
        try:
            value = change.apply(None if current is None else current.value)
        except NamingError as exc:
            return (0, (exc.status, exc.code.value, exc.message), 0)
        revision = (0 if current is None else current.revision) + 1
        if value is None:
            self.values.pop(key_text, None)
        else:
            self.values[key_text] = [revision, encode_value(key.kind, value)]
        datum = Datum(key, value, revision)
        with self._cache_lock:
            self._cache[key] = datum
        return (revision, None, self._on_applied(datum))

    def _datum(self, key: DatumKey) -> Datum | None:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        stored = self.values.get(key.encode())
        if stored is None:
            return None
        datum = Datum(key, decode_value(key.kind, stored[1]), int(stored[0]))
        with self._cache_lock:
            self._cache[key] = datum
        return datum

    def get(self, key: DatumKey) -> Datum | None:
        datum = self._datum(key)
        if datum is None or datum.value is None:
            return None
        return datum

    def items(self) -> Iterable[Datum]:
        out = []
        for key_text in list(self.values):
            datum = self.get(DatumKey.decode(key_text))
            if datum is not None:
                out.append(datum)
        return out

    def _deserialize(self, data: dict[str, Any]) -> None:
        """Loaded from a dump at start: drop decoded values and tell the listeners."""
        super()._deserialize(data)
        with self._cache_lock:
            self._cache.clear()
        for datum in self.items():
            self._on_applied(datum)
