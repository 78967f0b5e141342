"""The replicated state machine for persistent data: deterministic apply only.

pysyncobj calls :meth:`ReplicatedState.apply_change` on every member, in log order, on its tick
thread (the same entries again when the journal is replayed after a restart). ``apply`` decodes
the change, runs its pure ``apply`` on the current value and stores the JSON form; nothing in it
reads a clock, draws a random number or does I/O. The notifier hand-off afterwards is a local side
effect that does not feed back into the state (hashicorp/raft ``fsm.go``).

The state is a dict of decoded datums; ``_serialize``/``_deserialize`` turn it into the JSON
form for pysyncobj's snapshot (a dump holds JSON-able data only, never our classes).

Failure policy of ``apply`` (all or nothing, per change):

- a :class:`NamingError` is the change refusing itself (``already exists``...): the submitter
  gets it, the state is unchanged;
- any other exception while decoding or applying one change is a programming error. It is
  caught here, logged with its traceback, counted (``apply_failures``, exported as
  ``naming_raft_apply_failures_total``), and the submitter gets an :class:`InternalError`
  (HTTP 500); the state is unchanged for that change, and the other changes of the same batch
  apply as usual. Before this policy it escaped on pysyncobj's tick thread: the submitter
  waited for its timeout and got 503 "not confirmed", and the batch's later changes were
  never applied on this member although they were committed.

Why this keeps members identical: apply is deterministic, so the same entry fails the same way
on every member running the same code, and on a replay of the journal; every member skips it.
(A rolling upgrade that fixes the bug can apply, on an upgraded member, what an older member
skipped: the fix must then ship with a way to repair, as any change of apply's logic must.)
Nothing stored is touched before ``change.apply`` returns: changes are pure and return a new
value, the dict is written only after. The log line and the counter are local side effects that
never feed back into the state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    # pysyncobj ships no types: to mypy its names are Any, and a class built on Any lets every
    # attribute through unchecked. What this module uses of it, declared: a base class with a
    # no-argument constructor, and @replicated, which turns a method into a log command called
    # with the method's own arguments plus pysyncobj's keywords (callback, sync, timeout), and
    # answering the result only with sync=True.
    class SyncObjConsumer:
        def __init__(self) -> None: ...

    def replicated(method: Callable[..., object]) -> Callable[..., Any]: ...

else:
    from pysyncobj import SyncObjConsumer, replicated

from consistency.datum import Datum, DatumCodec, DatumKey
from consistency.service import Change
from lib.counters import LiveObjects, register_scrape_time
from lib.errors import InternalError, NamingError

log = logging.getLogger(__name__)

# The state machine's client hands it these (hashicorp/raft ``fsm.go``: the library never
# imports its client): how a journaled change is decoded, and the codec of the stored values.
ChangeDecoder = Callable[[Any], Change]

# Result of an apply as it travels back to the submitter: (revision, error in its wire form
# (``NamingError.to_wire``), local ticket).
ApplyResult = tuple[int, dict[str, object] | None, int]


class ReplicatedState(SyncObjConsumer):
    def __init__(
        self,
        on_applied: Callable[[Datum], int],
        codec: DatumCodec,
        decode_change: ChangeDecoder,
    ) -> None:
        # Set before super().__init__(): pysyncobj treats earlier attributes as non-state, and
        # we serialize ``_data`` ourselves (below) in JSON form.
        self._on_applied = on_applied
        self._codec = codec
        self._decode_change = decode_change
        self._data: dict[DatumKey, Datum] = {}
        # Local counts of the failure policy (module docstring); never part of the state.
        self.apply_failures = 0
        self.last_apply_failure = ""
        super().__init__()
        _LIVE.add(self)

    @replicated
    def apply_change(self, key_text: str, change_json: str) -> ApplyResult:
        return self._apply(key_text, json.loads(change_json))

    @replicated
    def apply_batch(self, batch_json: str) -> list[ApplyResult]:
        """Group commit: many submitters' changes in one log entry, applied in order."""
        return [self._apply(key_text, change) for key_text, change in json.loads(batch_json)]

    def _apply(self, key_text: str, change_data: dict[str, Any]) -> ApplyResult:
        """One change, all or nothing (the failure policy is in the module docstring)."""
        try:
            key = DatumKey.decode(key_text)
            current = self._data.get(key)
            change = self._decode_change(change_data)
            value = change.apply(None if current is None else current.value)
        except NamingError as exc:
            return (0, exc.to_wire(), 0)
        except Exception as exc:
            self.apply_failures += 1
            self.last_apply_failure = f"{key_text}: {type(exc).__name__}: {exc}"[:300]
            log.exception(
                "replicated apply failed for %s: change skipped, state unchanged", key_text
            )
            return (
                0,
                InternalError(
                    f"internal error applying the change ({type(exc).__name__})"
                ).to_wire(),
                0,
            )
        revision = (0 if current is None else current.revision) + 1
        datum = Datum(key, value, revision)
        if value is None:
            self._data.pop(key, None)
        else:
            # Decoded values only: encoding a large instance list on every apply made
            # persistent writes O(service size); the JSON form is built at snapshot time.
            self._data[key] = datum
        return (revision, None, self._on_applied(datum))

    def get(self, key: DatumKey) -> Datum | None:
        datum = self._data.get(key)
        if datum is None or datum.value is None:
            return None
        return datum

    def items(self) -> Iterable[Datum]:
        return [d for d in list(self._data.values()) if d.value is not None]

    def _serialize(self) -> dict[str, Any]:
        """What goes into pysyncobj's dump (on the tick thread, between applies)."""
        return {
            "values": {
                key.encode(): [datum.revision, self._codec.encode_value(key.kind, datum.value)]
                for key, datum in self._data.items()
            }
        }

    def _deserialize(self, data: dict[str, Any]) -> None:
        """Loaded from a dump at start: rebuild the values and tell the listeners."""
        restored: dict[DatumKey, Datum] = {}
        for key_text, (revision, encoded) in data.get("values", {}).items():
            key = DatumKey.decode(key_text)
            value = self._codec.decode_value(key.kind, encoded)
            restored[key] = Datum(key, value, int(revision))
        self._data = restored
        for datum in self.items():
            self._on_applied(datum)

    @property
    def values(self) -> dict[str, list[Any]]:
        """The JSON form of the state (what a snapshot holds); for tests and debugging."""
        return dict(self._serialize()["values"])


_LIVE: LiveObjects[ReplicatedState] = LiveObjects()


def _collect() -> Iterable[Metric]:
    failures = CounterMetricFamily(
        "naming_raft_apply_failures",
        "Replicated changes skipped because apply raised a programming error (raft/state.py).",
    )
    failures.add_metric([], sum(state.apply_failures for state in _LIVE.snapshot()))
    return [failures]


register_scrape_time(_collect)
