"""Deadline-driven beat expiry: when each ephemeral instance is next worth looking at.

A beat writes only its time into the :class:`naming.health.BeatTable` (the hottest request stays
one dict store). The deadlines live here, apart from the beats, and are re-checked lazily: when
an instance's deadline comes due, :func:`judge` compares it with the real last beat; an instance
that beat since is re-armed at its new deadline (about once per heartbeat timeout for an
instance that keeps beating), one that did not is marked unhealthy or removed. So a tick where
nothing is due costs a look at the top of a heap, not a walk over every instance.

Threads: an :class:`ExpiryQueue` belongs to the one thread that runs the ``beat-sweeper`` loop
(``naming.health.HealthServices``); nothing else reads or writes it, so it has no lock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from naming.domain import Instance, InstanceKey, ServiceName

# Deadlines fall just after a timeout, never on it: an instance is expired once its idle time is
# strictly over the timeout (as Nacos compares), and an entry that comes due always finds either
# an expired instance or a new deadline later than now (a tick never re-pops what it re-armed).
AFTER_S = 0.001
# How soon a verdict that was submitted is checked again: a lost submit (no quorum, a failed
# write) is retried, and a removed instance's entry is dropped once the removal has applied.
RECHECK_S = 1.0


class Action(Enum):
    KEEP = "keep"
    UNHEALTHY = "unhealthy"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    next_due: float  # when to look at the instance again (monotonic seconds)


def first_due(inst: Instance, last: float) -> float:
    """The first deadline of an instance last seen beating at ``last``."""
    return last + min(inst.heartbeat_timeout_ms, inst.ip_delete_timeout_ms) / 1000.0 + AFTER_S


def judge(inst: Instance, last: float, now: float) -> Verdict:
    """Pure decision for one instance whose deadline came due at ``now``.

    Nacos's rules: idle past the delete timeout → removed; past the heartbeat timeout → unhealthy
    (once). ``marked`` instances never expire; they are looked at again a heartbeat timeout later
    in case they lose the mark. The timeouts are read from the instance as it is now, so a
    ``preserved.*`` override changed since it was armed counts from here on."""
    timeout_s = inst.heartbeat_timeout_ms / 1000.0
    if inst.marked:
        return Verdict(Action.KEEP, now + timeout_s)
    delete_s = inst.ip_delete_timeout_ms / 1000.0
    idle = now - last
    if idle > delete_s:
        return Verdict(Action.REMOVE, now + RECHECK_S)
    if idle > timeout_s:
        if inst.healthy:
            # Checked again before the removal is due only to retry a submit that did not apply.
            return Verdict(Action.UNHEALTHY, min(last + delete_s + AFTER_S, now + RECHECK_S))
        return Verdict(Action.KEEP, last + delete_s + AFTER_S)
    return Verdict(Action.KEEP, last + min(timeout_s, delete_s) + AFTER_S)


class ExpiryQueue:
    """One pending deadline per armed (service, instance): a binary heap with lazy deletion.

    Each armed instance has a sequence number; a heap entry is live only while it carries the
    instance's current number, so re-arming and disarming are O(1) here plus one O(log n) push,
    and stale entries are skipped when they surface (or dropped all at once by :meth:`_compact`
    when they outnumber the live ones).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ServiceName, InstanceKey]] = []
        self._armed: dict[ServiceName, dict[InstanceKey, int]] = {}
        self._count = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._count

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    def armed_keys(self, service: ServiceName) -> Collection[InstanceKey]:
        return self._armed.get(service, {}).keys()

    def is_armed(self, service: ServiceName, key: InstanceKey) -> bool:
        return key in self._armed.get(service, ())

    def arm(self, service: ServiceName, key: InstanceKey, due: float) -> None:
        """Arm (or re-arm) ``key`` to come due at ``due``; any earlier deadline is replaced."""
        per_service = self._armed.get(service)
        if per_service is None:
            per_service = self._armed[service] = {}
        seq = next(self._seq)
        if key not in per_service:
            self._count += 1
        per_service[key] = seq
        heapq.heappush(self._heap, (due, seq, service, key))
        if len(self._heap) > 2 * self._count + 1024:
            self._compact()

    def disarm(self, service: ServiceName, key: InstanceKey) -> None:
        per_service = self._armed.get(service)
        if per_service is not None and per_service.pop(key, None) is not None:
            self._count -= 1
            if not per_service:
                del self._armed[service]

    def disarm_service(self, service: ServiceName) -> None:
        per_service = self._armed.pop(service, None)
        if per_service is not None:
            self._count -= len(per_service)

    def next_due(self) -> float | None:
        """The earliest deadline in the heap (possibly of a stale entry: a lower bound)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[ServiceName, InstanceKey]]:
        """Every armed instance whose deadline is at or before ``now``, earliest first.

        They stay armed, but without a live entry: the caller re-arms or disarms each one."""
        heap = self._heap
        due: list[tuple[ServiceName, InstanceKey]] = []
        while heap and heap[0][0] <= now:
            _, seq, service, key = heapq.heappop(heap)
            per_service = self._armed.get(service)
            if per_service is not None and per_service.get(key) == seq:
                per_service[key] = -1  # armed, no live entry until re-armed
                due.append((service, key))
        return due

    def _compact(self) -> None:
        live = self._armed
        self._heap = [e for e in self._heap if live.get(e[2], {}).get(e[3]) == e[1]]
        heapq.heapify(self._heap)
