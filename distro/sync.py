"""Replication timers of the owner: per-peer sync of changed keys, and the verify round.

``SyncScheduler`` keeps, per peer, the set of keys changed since the last batch sent to it.
A change only adds its key (many changes to one key cost one send: coalescing); the peer's thread
wakes, waits ``batch_window_s`` for more, reads the *current* datum of each key (tombstones too)
and hands at most ``max_batch`` of them to the dispatcher. A failed batch puts its keys back and
the thread backs off (bounded), so retries coalesce with newer changes too. Peers that membership
says are DOWN are skipped: they load a full snapshot when they come back, and the verify round
repairs anything a skipped batch leaves behind.

Threads: ``distro-sync-<peer>`` (one per peer) and ``distro-verify``, owned by this module's
classes, started by the runtime once the node is built, stopped by ``stop()`` (an Event, join).
``distro-verify`` is a ``lib.loops.PeriodicLoop``; the sync threads are queue-driven (they wait
for changes, then batch), so they keep their own loop and count every batch they attempt with a
``lib.loops.LoopTracker``: both show as ``naming_loop_*{loop=<thread name>}`` at ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consistency.datum import Datum, DatumCodec, DatumKey
from distro.dispatch import Dispatcher, DispatchFailed
from distro.mapper import DistroMapper
from distro.membership import Membership, MemberState
from distro.protocol import CHECKSUM_PATH, SYNC_PATH, PeerProtocol, encode_batch, split_batches
from distro.store import DistroStore
from distro.transport import PeerTransport, PeerUnreachable
from lib.errors import Unavailable
from lib.loops import LoopTracker, PeriodicLoop

log = logging.getLogger(__name__)


@dataclass
class SyncSettings:
    batch_window_s: float = 0.005
    max_batch: int = 1000
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    verify_interval_s: float = 5.0
    drop_syncs: bool = False  # fault injection for tests: lose every sync (verify must repair)
    # Opt-in: the owner answers a write only once the key's next owner holds it (SyncAck).
    sync_ack: bool = False
    sync_ack_timeout_s: float = 2.0


@dataclass
class PeerSyncStats:
    batches: int = 0
    datums: int = 0
    failures: int = 0
    last_error: str = ""


class _PeerQueue:
    def __init__(self, peer: str) -> None:
        self.keys: set[DatumKey] = set()
        self.wake = threading.Event()
        self.stats = PeerSyncStats()
        # Queue-driven, not periodic: each attempted batch is one counted run.
        self.tracker = LoopTracker(f"distro-sync-{peer}")


class SyncScheduler:
    def __init__(
        self,
        store: DistroStore,
        membership: Membership,
        dispatcher: Dispatcher,
        settings: SyncSettings,
    ) -> None:
        self._store = store
        self._membership = membership
        self._dispatcher = dispatcher
        self._settings = settings
        self._lock = threading.Lock()
        self._queues = {peer: _PeerQueue(peer) for peer in membership.peers}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def mark(self, key: DatumKey) -> None:
        """A local change to ``key`` (any thread, right after the store applied it)."""
        with self._lock:
            for queue in self._queues.values():
                queue.keys.add(key)
                queue.wake.set()

    def start(self) -> None:
        for peer, queue in self._queues.items():
            thread = threading.Thread(
                target=self._run, args=(peer, queue), name=f"distro-sync-{peer}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for queue in self._queues.values():
            queue.wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _take(self, queue: _PeerQueue) -> list[DatumKey]:
        with self._lock:
            if len(queue.keys) <= self._settings.max_batch:
                keys = list(queue.keys)
                queue.keys.clear()
                queue.wake.clear()
            else:
                keys = [queue.keys.pop() for _ in range(self._settings.max_batch)]
            return keys

    def _requeue(self, queue: _PeerQueue, keys: list[DatumKey]) -> None:
        with self._lock:
            queue.keys.update(keys)

    def _run(self, peer: str, queue: _PeerQueue) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            queue.wake.wait()
            if self._stop.is_set():
                return
            if backoff:
                if self._stop.wait(backoff):
                    return
            elif self._settings.batch_window_s:
                time.sleep(self._settings.batch_window_s)
            if self._membership.state_of(peer) is MemberState.DOWN:
                # It reloads a snapshot when it returns; keep nothing for it meanwhile.
                self._take(queue)
                backoff = 0.0
                continue
            keys = self._take(queue)
            if not keys:
                continue
            datums = [d for d in (self._store.raw(k) for k in keys) if d is not None]
            backoff = self._send(peer, queue, datums, backoff)

    def _send(self, peer: str, queue: _PeerQueue, datums: list[Datum], backoff: float) -> float:
        """Deliver ``datums`` in size-bounded batches; returns the next backoff (0 on success)."""
        batches = list(split_batches(datums, self._store.codec))
        for index, (chunk, body) in enumerate(batches):
            started = time.perf_counter()
            try:
                if not self._settings.drop_syncs:
                    self._dispatcher.deliver(peer, body)
            except Exception as exc:
                unsent = [d.key for later, _ in batches[index:] for d in later]
                queue.stats.failures += 1
                queue.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if isinstance(exc, DispatchFailed) and exc.permanent:
                    # Resending the same batch cannot help; verify repairs the peer.
                    log.error(
                        "sync to %s refused, %d datums left to verify: %s", peer, len(chunk), exc
                    )
                    unsent = unsent[len(chunk) :]
                if isinstance(exc, DispatchFailed):
                    queue.tracker.failed(queue.stats.last_error, time.perf_counter() - started)
                else:
                    # A bug must not kill the thread: the tracker logs it with its traceback.
                    queue.tracker.failed(exc, time.perf_counter() - started)
                self._requeue(queue, unsent)
                if unsent:
                    queue.wake.set()
                backoff = min(
                    self._settings.retry_max_s, max(self._settings.retry_initial_s, backoff * 2)
                )
                log.warning("sync to %s failed (retry in %.1f s): %s", peer, backoff, exc)
                return backoff
            queue.tracker.succeeded(time.perf_counter() - started)
            queue.stats.batches += 1
            queue.stats.datums += len(chunk)
        return 0.0

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                peer: {
                    "batches": q.stats.batches,
                    "datums": q.stats.datums,
                    "failures": q.stats.failures,
                    "lastError": q.stats.last_error,
                    "pending": len(q.keys),
                }
                for peer, q in self._queues.items()
            }


@dataclass(frozen=True, slots=True)
class _AckOutcome:
    ok: bool
    error: str
    refused: bool


class _AckItem:
    __slots__ = ("datum", "outcome")

    def __init__(self, datum: Datum) -> None:
        self.datum = datum
        self.outcome: _AckOutcome | None = None


class SyncAck:
    """Sync-ack mode: a change applied on its owner is sent, on the writer's own thread, to the
    member that would own the key if this one died, and the write is acknowledged only after
    that member has stored it.

    Why the *successor* and not any peer: when the owner dies, the successor becomes the owner
    and its copy is authoritative (verify replaces the other members' copies with it), so a
    change held only by some third member would be overwritten. A refused connection marks the
    successor DOWN and the next one is asked; a timeout or an error answer fails the write with
    503 (it stays applied here and the background sync still carries it; a retry is idempotent).
    With no other healthy member there is no one to hold the change: it is acknowledged (and
    counted as ``alone``), as the owner is then the only copy whatever the mode.

    No thread of its own: it runs on the request (or background writer) thread that submitted.
    Concurrent writers to one successor share a request (group commit, see ``_send``).
    """

    def __init__(
        self,
        local: str,
        membership: Membership,
        transport: PeerTransport,
        timeout_s: float,
        codec: DatumCodec,
    ) -> None:
        self._local = local
        self._codec = codec
        self._membership = membership
        self._transport = transport
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[str, list[_AckItem]] = {}
        self._sending: set[str] = set()
        self.acked = 0
        self.failed = 0
        self.alone = 0
        self.batches = 0
        self.last_error = ""

    def successor(self, service: str) -> str | None:
        """The member that owns ``service`` once this one is gone (None: no other member)."""
        others = [m for m in self._membership.mapper.healthy if m != self._local]
        return DistroMapper.of(self._local, others).owner(service) if others else None

    def hold(self, datum: Datum) -> None:
        """Return once the successor stored ``datum`` (or a newer revision); else Unavailable."""
        deadline = time.monotonic() + self._timeout_s
        error = "no answer"
        # Bounded: each refused successor leaves the healthy list, so it shrinks every round.
        for _ in range(len(self._membership.peers) + 1):
            peer = self.successor(datum.key.service)
            if peer is None:
                with self._lock:
                    self.alone += 1
                return
            if time.monotonic() >= deadline:
                break
            outcome = self._send(peer, datum, deadline)
            if outcome.ok:
                with self._lock:
                    self.acked += 1
                return
            error = outcome.error
            if not outcome.refused:
                break
            # A refused successor is DOWN now: the map no longer has it, ask the next one.
        with self._lock:
            self.failed += 1
            self.last_error = error[:300]
        log.warning("sync-ack of %s failed: %s", datum.key.encode(), error)
        raise Unavailable(
            f"the change to {datum.key.service} is applied on this member but no peer confirmed "
            f"it ({error}); it may be lost if this member fails now: retry (registration and "
            "deregistration are idempotent)"
        )

    def _send(self, peer: str, datum: Datum, deadline: float) -> _AckOutcome:
        """Group commit: the first writer to find no request in flight to ``peer`` sends every
        datum queued for it in one batch; the others wait for that batch's outcome (or, once
        the batch in flight is answered, one of them sends the next)."""
        item = _AckItem(datum)
        with self._cond:
            self._queues.setdefault(peer, []).append(item)
            while item.outcome is None:
                if peer not in self._sending:
                    self._sending.add(peer)
                    batch = self._queues.pop(peer)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    waiting = self._queues.get(peer, [])
                    if item in waiting:
                        waiting.remove(item)
                    return _AckOutcome(False, f"no batch to {peer} answered in time", False)
                self._cond.wait(remaining)
            else:
                return item.outcome
        try:
            outcome = self._call(peer, [i.datum for i in batch])
        except Exception as exc:  # a bug must not leave the other writers waiting
            log.exception("sync-ack batch to %s failed", peer)
            outcome = _AckOutcome(False, f"{type(exc).__name__}: {exc}", False)
        with self._cond:
            for queued in batch:
                queued.outcome = outcome
            self._sending.discard(peer)
            self.batches += 1
            self._cond.notify_all()
        return outcome

    def _call(self, peer: str, datums: list[Datum]) -> _AckOutcome:
        try:
            # A fixed timeout, not what is left of the writer's deadline: the transport keeps
            # its keep-alive connections per (peer, timeout), and a new value every call would
            # open (and keep) a new connection every call.
            response = self._transport.call(
                peer,
                "PUT",
                SYNC_PATH,
                encode_batch(datums, self._codec),
                {"Content-Type": "application/json"},
                self._timeout_s,
            )
        except PeerUnreachable as exc:
            self._membership.on_failure(peer, exc.refused)
            return _AckOutcome(False, str(exc), exc.refused)
        if response.ok:
            return _AckOutcome(True, "", False)
        return _AckOutcome(False, f"{peer} answered {response.status}", False)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "acked": self.acked,
                "failed": self.failed,
                "alone": self.alone,
                "batches": self.batches,
                "lastError": self.last_error,
            }


class VerifyLoop:
    """Every ``verify_interval_s`` send the checksums of the keys we own to every live peer."""

    def __init__(
        self,
        protocol: PeerProtocol,
        membership: Membership,
        transport: PeerTransport,
        dispatcher: Dispatcher,
        settings: SyncSettings,
        active: Callable[[], bool],
    ) -> None:
        self._protocol = protocol
        self._membership = membership
        self._transport = transport
        self._dispatcher = dispatcher
        self._settings = settings
        self._active = active
        self._stop = threading.Event()
        self.rounds = 0
        self.peer_failures = 0  # peers that did not take a round's checksums
        self._loop = PeriodicLoop(
            "distro-verify",
            self._round,
            settings.verify_interval_s,
            owner="VerifyLoop",
            stop_event=self._stop,
        )
        # The dispatcher's self-check rides on the verify thread (no thread of its own) but is
        # counted apart, and a failed verify round no longer skips it.
        self._dispatch_check = LoopTracker("distro-dispatch-check")

    @property
    def failures(self) -> int:
        """Failed rounds plus peers that did not take a round (``verifyFailures`` in the JSON)."""
        return self._loop.failures + self.peer_failures

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._stop.set()
        # A round blocked on a peer that is stopping too is abandoned (daemon thread; a
        # verify round is idempotent), so a whole cluster stopping at once stays quick.
        self._loop.join(timeout=1)

    def _round(self) -> None:
        try:
            if self._active():
                self.verify_once()
        finally:
            self._dispatch_check.run(self._dispatcher.check)

    def verify_once(self) -> None:
        self.rounds += 1
        mapper = self._membership.mapper
        sums = self._protocol.checksums_for(mapper)
        body = json.dumps(sums, separators=(",", ":")).encode()
        path = f"{CHECKSUM_PATH}?source={self._membership.local}"
        for peer in self._membership.peers:
            if self._membership.state_of(peer) is MemberState.DOWN:
                continue
            try:
                response = self._transport.call(
                    peer, "PUT", path, body, {"Content-Type": "application/json"}, timeout=15
                )
            except PeerUnreachable as exc:
                self.peer_failures += 1
                log.info("verify to %s failed: %s", peer, exc)
                continue
            if not response.ok:
                self.peer_failures += 1
                log.warning("verify to %s answered %s", peer, response.status)
