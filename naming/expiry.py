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
from enum import Enum

from naming.domain import (
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
    DEFAULT_IP_DELETE_TIMEOUT_MS,
    Instance,
    InstanceKey,
    ServiceName,
)

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


KEEP, UNHEALTHY, REMOVE = Action.KEEP, Action.UNHEALTHY, Action.REMOVE

# (what to do now, when to look at the instance again in monotonic seconds). A plain tuple: this
# runs for every deadline that comes due, about once per heartbeat timeout per live instance.
Verdict = tuple[Action, float]


_DEFAULTS_S = (DEFAULT_HEARTBEAT_TIMEOUT_MS / 1000.0, DEFAULT_IP_DELETE_TIMEOUT_MS / 1000.0)


def timeouts_s(inst: Instance) -> tuple[float, float]:
    """(heartbeat timeout, delete timeout) in seconds. Without metadata (most instances) the
    defaults, without reading the ``preserved.*`` keys (an enum-keyed lookup each)."""
    if not inst.metadata:
        return _DEFAULTS_S
    return inst.heartbeat_timeout_ms / 1000.0, inst.ip_delete_timeout_ms / 1000.0


def first_due(inst: Instance, last: float) -> float:
    """The first deadline of an instance last seen beating at ``last``."""
    timeout_s, delete_s = timeouts_s(inst)
    return last + (timeout_s if timeout_s < delete_s else delete_s) + AFTER_S


def judge(inst: Instance, last: float, now: float) -> Verdict:
    """Pure decision for one instance whose deadline came due at ``now``.

    Nacos's rules: idle past the delete timeout → removed; past the heartbeat timeout → unhealthy
    (once). ``marked`` instances never expire; they are looked at again a heartbeat timeout later
    in case they lose the mark. The timeouts are read from the instance as it is now, so a
    ``preserved.*`` override changed since it was armed counts from here on."""
    timeout_s, delete_s = timeouts_s(inst)
    if inst.marked:
        return KEEP, now + timeout_s
    idle = now - last
    if idle > delete_s:
        return REMOVE, now + RECHECK_S
    if idle > timeout_s:
        if inst.healthy:
            # Checked again before the removal is due only to retry a submit that did not apply.
            removal = last + delete_s + AFTER_S
            return UNHEALTHY, removal if removal < now + RECHECK_S else now + RECHECK_S
        return KEEP, last + delete_s + AFTER_S
    return KEEP, last + (timeout_s if timeout_s < delete_s else delete_s) + AFTER_S


class ServiceDeadlines:
    """The armed instances of one service: key → sequence number of its live heap entry (-1
    while it has none: popped, not yet re-armed). Heap entries point at this record rather than
    at the service name, so checking an entry costs one instance-key lookup (a tuple hash in C)
    and no service-name hash (a dataclass's, in Python)."""

    __slots__ = ("armed", "name")

    def __init__(self, name: ServiceName) -> None:
        self.name = name
        self.armed: dict[InstanceKey, int] = {}


class ExpiryQueue:
    """One pending deadline per armed (service, instance): a binary heap with lazy deletion.

    A heap entry is live only while it carries its instance's current sequence number, so
    re-arming and disarming are O(1) here plus one O(log n) push, and stale entries are skipped
    when they surface (or dropped all at once by :meth:`_compact` when they outnumber the live
    ones). A disarmed service's record is detached: its entries all turn stale at once.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ServiceDeadlines, InstanceKey]] = []
        self._services: dict[ServiceName, ServiceDeadlines] = {}
        self._count = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._count

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    def armed_keys(self, service: ServiceName) -> Collection[InstanceKey]:
        record = self._services.get(service)
        return record.armed.keys() if record is not None else ()

    def arm(self, service: ServiceName, key: InstanceKey, due: float) -> None:
        """Arm (or re-arm) ``key`` to come due at ``due``; any earlier deadline is replaced."""
        record = self._services.get(service)
        if record is None:
            record = self._services[service] = ServiceDeadlines(service)
        self.rearm(record, key, due)

    def rearm(self, record: ServiceDeadlines, key: InstanceKey, due: float) -> None:
        """:meth:`arm` for a record :meth:`pop_due` handed out (no service-name lookup)."""
        seq = next(self._seq)
        if key not in record.armed:
            self._count += 1
        record.armed[key] = seq
        heapq.heappush(self._heap, (due, seq, record, key))
        if len(self._heap) > 2 * self._count + 1024:
            self._compact()

    def disarm(self, record: ServiceDeadlines, key: InstanceKey) -> None:
        if record.armed.pop(key, None) is not None:
            self._count -= 1
            if not record.armed and self._services.get(record.name) is record:
                del self._services[record.name]

    def disarm_key(self, service: ServiceName, key: InstanceKey) -> None:
        record = self._services.get(service)
        if record is not None:
            self.disarm(record, key)

    def disarm_service(self, service: ServiceName) -> None:
        record = self._services.pop(service, None)
        if record is not None:
            self._count -= len(record.armed)
            record.armed = {}

    def next_due(self) -> float | None:
        """The earliest deadline in the heap (possibly of a stale entry: a lower bound)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> dict[ServiceDeadlines, list[InstanceKey]]:
        """Every armed instance whose deadline is at or before ``now``, grouped by service,
        each group earliest first. They stay armed, but without a live entry: the caller
        re-arms or disarms each one."""
        heap = self._heap
        due: dict[ServiceDeadlines, list[InstanceKey]] = {}
        while heap and heap[0][0] <= now:
            _, seq, record, key = heapq.heappop(heap)
            armed = record.armed
            if armed.get(key) == seq:
                armed[key] = -1
                keys = due.get(record)
                if keys is None:
                    keys = due[record] = []
                keys.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2].armed.get(e[3]) == e[1]]
        heapq.heapify(self._heap)
