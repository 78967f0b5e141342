"""The CP consistency service: changes go through the Raft log before they are applied.

``submit`` is called on request threads and background threads. Submissions are group-committed:
one batcher thread packs whatever is waiting into a single log entry (``apply_batch``), so a
burst of 64 concurrent writes costs one replication round and one journal sync per member
instead of 64. pysyncobj forwards an entry proposed on a follower to the leader and calls back
when it is committed and applied on this member; the submitter then wakes.

On a non-voter (a pysyncobj read-only node) it is the same: pysyncobj forwards the entry to the
leader it last heard from and calls back once it is applied here. Such a node never elects and
never forgets a leader on its own (only a new leader's append-entries replace it), so it treats
the leader as known only while its connection to it is up.

A submitter that times out gets 503 "not confirmed": pysyncobj does not cancel the entry, which
may still commit, which is why every change is idempotent or precondition-checked in apply.

Thread: ``raft-batcher``, owned by this service, started in ``__init__`` and stopped by
``stop()`` (the node's shutdown path, before the SyncObj is destroyed). At most
``MAX_IN_FLIGHT`` batches are outstanding: uncapped async commands starve the tick thread.
Each batch is counted by a ``lib.loops.LoopTracker`` (``naming_loop_*{loop="raft-batcher"}``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consistency.datum import Datum, DatumKey
from consistency.service import Applied, Change
from lib.blocking import may_block
from lib.errors import Unavailable, from_wire
from lib.loops import LoopTracker
from raft import guard
from raft.state import ApplyResult, ReplicatedState

MAX_BATCH = 256
# A batch is one log entry, and a follower forwards it to the leader in one message: keeping it
# near 1 MiB lets the raft port cap messages at 16 MiB (raft.guard) with a wide margin.
MAX_BATCH_BYTES = 1024 * 1024
MAX_IN_FLIGHT = 2
# A batch whose callback never comes (pysyncobj can drop a forwarded command when the leader
# dies) gives its slot back after this long; its submitters have timed out by then.
IN_FLIGHT_DEADLINE_S = 15.0
LEADERLESS_WAIT_S = 2.0  # longer than an election (0.35-0.75 s timeouts here)


@dataclass
class _Pending:
    key_text: str
    change: dict[str, Any]
    encoded: str = ""  # ``[key_text, change]`` as JSON, built on the submitter's thread
    done: threading.Event = field(default_factory=threading.Event)
    result: ApplyResult | None = None
    failure: str = ""


def _batch_length(queue: list[_Pending]) -> int:
    """How many queued changes go in the next entry: at least one, at most MAX_BATCH changes,
    stopping once MAX_BATCH_BYTES is reached."""
    size = 0
    for count, pending in enumerate(queue[:MAX_BATCH], start=1):
        size += len(pending.encoded) + 1
        if size >= MAX_BATCH_BYTES:
            return count
    return min(len(queue), MAX_BATCH)


class RaftConsistencyService:
    def __init__(
        self, state: ReplicatedState, syncobj: Any, self_address: str = "", voter: bool = True
    ) -> None:
        self._state = state
        self._syncobj = syncobj
        self._self_address = self_address  # host:raft_port; pysyncobj says None on a non-voter
        self.voter = voter
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._in_flight: dict[int, tuple[float, list[_Pending]]] = {}
        self._next_batch = 0
        self._stopping = False
        self.batches = 0
        self.batched_changes = 0
        # Queue-driven, not periodic: every batch handed to pysyncobj is one counted run.
        self._tracker = LoopTracker("raft-batcher")
        self._thread = threading.Thread(target=self._run, name="raft-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def submit(self, key: DatumKey, change: Change, timeout: float) -> Applied:
        may_block("raft commit")
        if not self._await_leader(min(timeout, LEADERLESS_WAIT_S)):
            raise Unavailable(
                "no raft leader (no quorum, or an election is running): persistent data is "
                "read-only on this member for now; retry"
            )
        pending = _Pending(key.encode(), change.encode())
        pending.encoded = json.dumps([pending.key_text, pending.change])
        with self._cond:
            if self._stopping:
                raise Unavailable("node is shutting down")
            self._queue.append(pending)
            self._cond.notify()
        if not pending.done.wait(timeout) or pending.result is None:
            reason = pending.failure or "Timeout"
            raise Unavailable(
                f"persistent write not confirmed within {timeout:g}s ({reason}): no quorum, "
                "or this member is behind the leader; it may still apply, retry is safe"
            )
        revision, error, ticket = pending.result
        if error is not None:
            raise from_wire(error)
        datum = self._state.get(key)
        return Applied(datum or Datum(key, None, revision), ticket)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    self._reap_expired()
                    if self._queue and len(self._in_flight) < MAX_IN_FLIGHT:
                        break
                    self._cond.wait(0.5)
                taken = _batch_length(self._queue)
                batch, self._queue = self._queue[:taken], self._queue[taken:]
                self._next_batch += 1
                batch_id = self._next_batch
                self._in_flight[batch_id] = (time.monotonic() + IN_FLIGHT_DEADLINE_S, batch)
            self.batches += 1
            self.batched_changes += len(batch)
            payload = "[" + ",".join(p.encoded for p in batch) + "]"
            started = time.perf_counter()
            try:
                self._state.apply_batch(
                    payload, callback=lambda result, err, i=batch_id: self._finish(i, result, err)
                )
            except Exception as exc:  # e.g. the command queue is full: fail this batch only
                self._tracker.failed(exc, time.perf_counter() - started)
                self._finish(batch_id, None, str(exc))
            else:
                # Counts the hand-off to pysyncobj; the commit itself ends in ``_finish``.
                self._tracker.succeeded(time.perf_counter() - started)

    def _reap_expired(self) -> None:
        now = time.monotonic()
        for batch_id in [i for i, (deadline, _) in self._in_flight.items() if deadline < now]:
            _, batch = self._in_flight.pop(batch_id)
            for pending in batch:
                pending.failure = pending.failure or "no answer from raft"
                pending.done.set()

    def _finish(self, batch_id: int, results: Any, err: Any) -> None:
        """pysyncobj callback, on its tick thread: hand each submitter its own result."""
        with self._cond:
            entry = self._in_flight.pop(batch_id, None)
            self._cond.notify_all()
        if entry is None:
            return  # reaped already; its submitters were told
        batch = entry[1]
        if err == 0 and results is not None:
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
        else:
            for pending in batch:
                pending.failure = f"raft error {err}"
        for pending in batch:
            pending.done.set()

    def get(self, key: DatumKey) -> Datum | None:
        return self._state.get(key)

    def items(self) -> Iterable[Datum]:
        return self._state.items()

    def is_available(self) -> bool:
        leader = self._syncobj._getLeader()
        if leader is None:
            return False
        # A voter drops a silent leader by its election timeout; a non-voter has none.
        return self.voter or bool(self._syncobj.isNodeConnected(leader))

    def _await_leader(self, wait_s: float) -> bool:
        """An election takes well under a second: wait that long before refusing a write."""
        deadline = time.monotonic() + wait_s
        while not self.is_available():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> Mapping[str, Any]:
        raw = self._syncobj.getStatus()
        leader = raw.get("leader")
        own = raw.get("self")
        return {
            "role": {0: "FOLLOWER", 1: "CANDIDATE", 2: "LEADER"}.get(raw.get("state"), "UNKNOWN"),
            "voter": self.voter,
            "term": raw.get("raft_term"),
            "commitIndex": raw.get("commit_idx"),
            "lastApplied": raw.get("last_applied"),
            "leader": None if leader is None else str(leader),
            "self": self._self_address or (None if own is None else str(own)),
            "hasQuorum": bool(raw.get("has_quorum")),
            # Non-voters connected to this member (they are anonymous on the raft port).
            "nonVotersConnected": raw.get("readonly_nodes_count", 0),
            "logSize": raw.get("log_len"),
            "batches": self.batches,
            "batchedChanges": self.batched_changes,
            "applyFailures": self._state.apply_failures,
            "lastApplyFailure": self._state.last_apply_failure,
            "transport": guard.stats(),
        }
