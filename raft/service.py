"""The CP consistency service: changes go through the Raft log before they are applied.

``submit`` is called on request threads and background threads; pysyncobj forwards a call made
on a follower to the leader and wakes the caller when the entry is committed and applied here.
A sync call that times out does not cancel the entry, which is why every change is idempotent
or revision-checked (DESIGN §5).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pysyncobj import SyncObjException  # type: ignore[import-untyped]

from consistency.datum import Datum, DatumKey
from consistency.service import Applied, Change
from naming.errors import Unavailable, error_from_parts
from raft.state import ReplicatedState


class RaftConsistencyService:
    def __init__(self, state: ReplicatedState, syncobj: Any) -> None:
        self._state = state
        self._syncobj = syncobj

    def submit(self, key: DatumKey, change: Change, timeout: float) -> Applied:
        try:
            revision, error, ticket = self._state.apply_change(
                key.encode(), json.dumps(change.encode()), sync=True, timeout=timeout
            )
        except SyncObjException as exc:
            # Not a "no": a timed-out entry may still commit (pysyncobj does not cancel it),
            # which is why every change is idempotent. The client must treat it as unknown.
            raise Unavailable(
                f"persistent write not confirmed within {timeout:g}s ({exc.errorCode}): no "
                "quorum, or this member is behind the leader; it may still apply, retry is safe"
            ) from None
        if error is not None:
            raise error_from_parts(*error)
        datum = self._state.get(key)
        return Applied(datum or Datum(key, None, revision), ticket)

    def get(self, key: DatumKey) -> Datum | None:
        return self._state.get(key)

    def items(self) -> Iterable[Datum]:
        return self._state.items()

    def is_available(self) -> bool:
        return bool(self._syncobj._getLeader() is not None)

    def status(self) -> Mapping[str, Any]:
        raw = self._syncobj.getStatus()
        leader = raw.get("leader")
        return {
            "role": {0: "FOLLOWER", 1: "CANDIDATE", 2: "LEADER"}.get(raw.get("state"), "UNKNOWN"),
            "term": raw.get("raft_term"),
            "commitIndex": raw.get("commit_idx"),
            "lastApplied": raw.get("last_applied"),
            "leader": None if leader is None else str(leader),
            "self": str(raw.get("self")),
            "logSize": raw.get("log_len"),
        }
