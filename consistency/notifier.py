"""The one notifier queue between the stores and the listeners that keep the registry current.

Stores call :meth:`Notifier.notify` with every new datum (from any thread, including the Raft
tick thread). Changes are coalesced per key: a burst of 64 registrations to one service costs
one registry rebuild, not 64. Each listener is isolated: an exception is logged and counted per
listener and never stops the queue or the other listeners (hashicorp/raft ``observer.go``); the
counts are ``lib.listeners``' (``naming_listener_*{source="notifier"}`` at ``/metrics``).

Writers that must see their own change before they answer (``ok`` means visible) take the ticket
returned by ``notify`` and call :meth:`wait_processed`, which delivers the batch on the calling
thread when the worker is idle.

Thread: one daemon worker, owned by the Notifier; started by :meth:`start`, stopped by
:meth:`stop` (the node's shutdown path), which drains nothing further and joins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consistency.datum import Datum, DatumKey
from lib.listeners import ListenerList, ListenerStats
from lib.loops import LoopTracker

Listener = Callable[[Datum], None]


@dataclass(slots=True)
class NotifierStats:
    notified: int = 0
    processed: int = 0
    batches: int = 0
    listeners: list[ListenerStats] = field(default_factory=list)


class WriterDelivers:
    """The scope of :meth:`Notifier.writer_delivers` (a class: it is entered on every write)."""

    __slots__ = ("_notifier",)

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def __enter__(self) -> None:
        self._notifier._local.delivers = True

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._notifier._local.delivers = False
        if kind is not None:
            self._notifier._wake()


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Two conditions on one lock: writers wait on ``_cond`` for their ticket to be done,
        # the worker waits on ``_work`` for something to deliver, so the end of each delivery
        # does not wake the worker and a new datum does not wake the writers.
        self._cond = threading.Condition(self._lock)
        self._work = threading.Condition(self._lock)
        self._pending: dict[DatumKey, Datum] = {}
        self._listeners: ListenerList[Datum] = ListenerList("notifier")
        self._seq = 0  # tickets handed out
        self._done = 0  # every ticket <= _done has been delivered to all listeners
        self._stopping = False
        self._thread: threading.Thread | None = None
        # One delivery at a time: a ticket is done only when its whole batch was delivered.
        self._deliver_lock = threading.Lock()
        self.stats = NotifierStats()
        # Batches delivered (by the worker or a waiting writer): ``naming_loop_*{loop="notifier"}``.
        self._tracker = LoopTracker("notifier")
        # Per thread: set while a writer that will wait for its own ticket is submitting
        # (:meth:`writer_delivers`), so its notify does not wake the worker for a batch the
        # writer delivers itself a moment later.
        self._local = threading.local()
        self.wakes_skipped = 0  # approximate under concurrency: a metric

    def add_listener(self, name: str, listener: Listener) -> None:
        self.stats.listeners.append(self._listeners.add(name, listener))

    def notify(self, datum: Datum) -> int:
        """Queue ``datum`` for the listeners; returns a ticket for :meth:`wait_processed`.

        Called by any thread. A newer datum for the same key replaces a queued older one;
        a stale one (lower revision, e.g. a reordered peer sync) is dropped.
        """
        with self._cond:
            queued = self._pending.get(datum.key)
            if queued is None or queued.revision <= datum.revision:
                self._pending[datum.key] = datum
            self._seq += 1
            self.stats.notified += 1
            if getattr(self._local, "delivers", False):
                self.wakes_skipped += 1
            else:
                self._work.notify()
            return self._seq

    def writer_delivers(self) -> WriterDelivers:
        """``with notifier.writer_delivers(): store.submit(...)`` then
        ``wait_processed(ticket)``: the datums this thread notifies inside the block do not wake
        the worker thread, because the writer delivers them itself in :meth:`wait_processed`
        (measured: the wake-up and the GIL hand-off to a worker that then finds nothing to do
        cost more than the delivery). If the block raises, the worker is woken on the way out,
        so a datum notified before the error is still delivered."""
        return WriterDelivers(self)

    def _wake(self) -> None:
        with self._cond:
            self._work.notify()

    def notify_barrier(self) -> int:
        """A ticket that is done once everything notified so far has been delivered."""
        with self._cond:
            return self._seq

    def wait_processed(self, ticket: int, timeout: float) -> bool:
        """Block until the change behind ``ticket`` reached every listener (or ``timeout``).

        The waiting thread delivers the pending batch itself when no delivery is running
        ("caller runs"): a handoff to the worker thread and back costs more than the delivery
        under the GIL. Delivery stays one batch at a time under ``_deliver_lock``, so listeners
        still see one writer, in order.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if self._done >= ticket or self._stopping:
                    return True
            if self._deliver_lock.acquire(blocking=False):
                try:
                    self._deliver_locked()
                finally:
                    self._deliver_lock.release()
                continue
            with self._cond:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._done >= ticket
                self._cond.wait_for(
                    lambda: self._done >= ticket or self._stopping, min(remaining, 0.05)
                )

    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._work.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self) -> None:
        """Deliver everything queued on the calling thread (tests and the in-memory harness)."""
        self._deliver_batch()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._work.wait_for(lambda: bool(self._pending) or self._stopping)
                if self._stopping:
                    return
            self._deliver_batch()

    def _deliver_batch(self) -> None:
        with self._deliver_lock:
            self._deliver_locked()

    def _deliver_locked(self) -> None:
        started = time.perf_counter()
        with self._cond:
            batch = self._pending
            self._pending = {}
            upto = self._seq
        for datum in batch.values():
            self._listeners.call(datum, datum.key)  # isolated: count, log, go on
        with self._cond:
            self._done = max(self._done, upto)
            self.stats.processed += len(batch)
            self.stats.batches += 1
            self._cond.notify_all()
        if batch:
            # Under _deliver_lock: one delivery at a time, whichever thread runs it.
            self._tracker.succeeded(time.perf_counter() - started)
