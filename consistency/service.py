"""The consistency seam: one interface, two modes, one delegate that routes by key kind.

``DelegateConsistencyService`` sends ephemeral keys to the Distro store (AP) and every other key
to the Raft service (CP). Both apply a :class:`Change` atomically and hand the resulting datum to
the one notifier; the delegate then waits until the listeners have seen it, so a write that
answers ``ok`` is visible to the next read on this node.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from consistency.datum import Datum, DatumKey, Value
from consistency.notifier import Notifier
from lib.errors import Unavailable
from lib.ratelimit import LogThrottle

log = logging.getLogger(__name__)

# How long a writer waits for its change to reach the registry before answering anyway.
VISIBILITY_TIMEOUT_S = 5.0


class Change(Protocol):
    """What the stores need of a change (see ``naming.changes``)."""

    def apply(self, current: Any) -> Value | None: ...

    def encode(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Applied:
    datum: Datum
    ticket: int  # notifier ticket of this change on the local node


class ConsistencyService(Protocol):
    """A store for one consistency mode.

    Concurrency contract: ``submit`` is called from request threads and background threads
    (sweeper, health checker) at the same time; changes to one key are applied one at a time in
    submission order on the deciding node. ``get`` is lock-free and may run concurrently with
    ``submit``; it returns the latest applied datum, never a half-applied one.
    """

    def submit(self, key: DatumKey, change: Change, timeout: float) -> Applied: ...

    def get(self, key: DatumKey) -> Datum | None: ...

    def items(self) -> Iterable[Datum]: ...

    def is_available(self) -> bool: ...

    def status(self) -> Mapping[str, Any]: ...


class WriteObserver(Protocol):
    """Told of every write submitted on this member, once applied (the audit trail).

    Runs on the writer's thread, inside its request: it must do O(1) work and never block.
    ``before`` is the datum read just before the submit (under concurrent writes to one key it
    may be one revision older than the change's real predecessor); ``after`` is the result."""

    def on_write(
        self, key: DatumKey, change: Change, before: Datum | None, after: Datum
    ) -> None: ...


class DelegateConsistencyService:
    def __init__(
        self, ephemeral: ConsistencyService, persistent: ConsistencyService, notifier: Notifier
    ) -> None:
        self.ephemeral = ephemeral
        self.persistent = persistent
        self.notifier = notifier
        self._observers: tuple[WriteObserver, ...] = ()
        self.observer_errors = 0  # approximate under concurrency: a metric
        self._observer_log = LogThrottle(10.0)

    def add_observer(self, observer: WriteObserver) -> None:
        self._observers = (*self._observers, observer)

    def _observe(self, key: DatumKey, change: Change, before: Datum | None, after: Datum) -> None:
        for observer in self._observers:
            try:
                observer.on_write(key, change, before, after)
            except Exception:
                # An observer's bug must never fail (or half-fail) a write that is stored.
                self.observer_errors += 1
                suppressed = self._observer_log.admit()
                if suppressed is not None:
                    log.exception("write observer %r failed (%d more since)", observer, suppressed)

    def route(self, key: DatumKey) -> ConsistencyService:
        return self.ephemeral if key.ephemeral else self.persistent

    def submit(self, key: DatumKey, change: Change, timeout: float = 5.0) -> Datum:
        store = self.route(key)
        observed = bool(self._observers)
        before = store.get(key) if observed else None
        with self.notifier.writer_delivers():  # we wait for the ticket below
            applied = store.submit(key, change, timeout)
        if observed:
            self._observe(key, change, before, applied.datum)
        if not self.notifier.wait_processed(applied.ticket, VISIBILITY_TIMEOUT_S):
            # The write is stored; only its visibility lags. Say so rather than pretend.
            raise Unavailable("write stored but not yet visible, notifier is lagging")
        return applied.datum

    def get(self, key: DatumKey) -> Datum | None:
        return self.route(key).get(key)

    def value(self, key: DatumKey) -> Value | None:
        datum = self.get(key)
        return None if datum is None else datum.value

    def is_available(self) -> bool:
        return self.ephemeral.is_available() and self.persistent.is_available()
