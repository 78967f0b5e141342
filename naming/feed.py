"""The change feed: what changed in this member's registry, in order, for a few minutes.

Every new :class:`ServiceView` (a change from any protocol, made on any member: the registry
sees them all) is compared with the one before it, and each difference is appended as a
:class:`FeedEvent` with a member-local index that only grows, and the view's revision:

- ``up``: an instance appeared serving (healthy and enabled), or started serving;
- ``down``: an instance appeared not serving, or stopped serving;
- ``update``: an instance changed in what clients see (weight, metadata, ...) but not in whether
  it serves. What they never see (its lease, its last beat) is no event;
- ``removed``: an instance left (deregistered, expired, its service deleted);
- ``leader``: the leader of the service (scope ``""``) or of one of its clusters changed
  (``naming.leaders``); the event carries the new leader, or none;
- ``service``: the service's settings changed, or it was deleted (``meta`` None).

The feed is the one source of "what changed since X" for every edge: conditional and held
fetches wake on it, the event streams replay and follow it, and a Eureka delta is a window of
it. Its index is member-local (members apply the same changes at different moments, and
ephemeral changes in different orders), so a position is only meaningful on the member that
gave it; :attr:`ChangeFeed.epoch` names this member's incarnation so an edge can tell.

Memory is bounded twice: events older than ``retention_s`` go, and so do the oldest past
``max_events`` (counted in ``trimmed_early``: a reader that far behind starts again from the
current state).

Threads: :meth:`on_view` runs on the notifier thread only (the registry's listener), so appends
have one writer; readers (event loops, request threads) take the lock only to copy a slice.
``sinks`` are told once per appending call, on the notifier thread; they must only schedule
work elsewhere (an event loop's ``call_soon_threadsafe``), never block it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from lib.listeners import ListenerList
from naming.domain import Instance, InstanceKey, ServiceMeta, ServiceName, as_shown
from naming.leaders import Leaders, leaders, serving
from naming.registry import ServiceView

DEFAULT_RETENTION_S = 180.0  # Eureka keeps its delta queue for 3 minutes
DEFAULT_MAX_EVENTS = 100_000


class EventKind(StrEnum):
    UP = "up"
    DOWN = "down"
    UPDATE = "update"
    REMOVED = "removed"
    LEADER = "leader"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    index: int
    service: ServiceName
    revision: int  # the service view's revision after this change
    kind: EventKind
    instance: Instance | None = None  # weights clamped, as clients are shown them
    scope: str = ""  # leader events: "" for the service, else the cluster
    meta: ServiceMeta | None = None  # service events: the new settings (None: deleted)
    at: float = 0.0  # monotonic time appended (retention)


Topic = tuple[str, str, str]  # (namespace, group or "", grouped service name or "")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which services a reader follows: one, a group, or a namespace."""

    namespace: str
    group: str | None = None
    grouped: str | None = None  # "group@@name"

    def matches(self, name: ServiceName) -> bool:
        if name.namespace != self.namespace:
            return False
        if self.grouped is not None:
            return name.grouped == self.grouped
        return self.group is None or name.group == self.group

    @property
    def topic(self) -> Topic:
        """This scope as a key a reader can be indexed by (see :meth:`topics_of`)."""
        if self.grouped is not None:
            return (self.namespace, "", self.grouped)
        return (self.namespace, self.group or "", "")

    @staticmethod
    def topics_of(name: ServiceName) -> tuple[Topic, Topic, Topic]:
        """The topics of every scope that matches ``name``: its service's, its group's, its
        namespace's (so ``matches(name)`` holds exactly for the scopes whose ``topic`` is
        among them)."""
        namespace = name.namespace
        return ((namespace, "", name.grouped), (namespace, name.group, ""), (namespace, "", ""))


@dataclass(slots=True)
class FeedStats:
    appended: int = 0
    trimmed: int = 0
    trimmed_early: int = 0  # dropped by the size bound before their retention ran out
    views_seen: int = 0


def _same_to_clients(old: Instance, new: Instance) -> bool:
    """Equal but for what no client is shown (the lease moves on a reconnect's re-register)."""
    if old.lease != new.lease:
        new = new.with_changes(lease=old.lease)
    return old == new


def _touched(
    old: Mapping[InstanceKey, Instance], new: Mapping[InstanceKey, Instance]
) -> tuple[list[tuple[Instance | None, Instance]], list[Instance]]:
    """(before, after) of every instance that is not the very same object in ``new``, and the
    instances that left; both in stored order.

    Runs on every write, so the O(n) part stays in C: an update or an append keeps the stored
    order of what was there, so the common case compares the two value lists object by object
    (``map(is_not)``, ``compress``) without hashing a key; a removal falls back to one dict
    lookup per key, still without a Python-level loop.
    """
    count = len(old)
    new_keys, new_values = list(new), list(new.values())
    if new_keys[:count] == list(old):  # identical key objects: a pointer compare each
        old_values = list(old.values())
        pairs: list[tuple[Instance | None, Instance]] = [
            (old_values[n], new_values[n]) for n in _differing(old_values, new_values[:count])
        ]
        pairs.extend((None, inst) for inst in new_values[count:])
        return pairs, []
    befores = list(map(old.get, new_keys))
    pairs = [(befores[n], new_values[n]) for n in _differing(befores, new_values)]
    gone = old.keys() - new.keys()
    return pairs, [inst for key, inst in old.items() if key in gone] if gone else []


_BLOCK = 256


def _differing(before: Sequence[Instance | None], after: Sequence[Instance]) -> list[int]:
    """Where two equally long lists differ. Blocks are compared as lists first: C skips the
    identical objects (a pointer compare each), so only a block holding a change is walked."""
    found: list[int] = []
    for start in range(0, len(after), _BLOCK):
        end = start + _BLOCK
        if before[start:end] != after[start:end]:
            found.extend(n for n in range(start, min(end, len(after))) if before[n] is not after[n])
    return found


def _instance_kinds(
    old: Mapping[InstanceKey, Instance], new: Mapping[InstanceKey, Instance]
) -> list[tuple[EventKind, Instance]]:
    if old is new:
        return []
    pairs, gone = _touched(old, new)
    changes: list[tuple[EventKind, Instance]] = []
    for before, inst in pairs:
        if before is None or serving(before) != serving(inst):
            changes.append((EventKind.UP if serving(inst) else EventKind.DOWN, inst))
        elif not _same_to_clients(before, inst):
            changes.append((EventKind.UPDATE, inst))
    changes.extend((EventKind.REMOVED, inst) for inst in gone)
    return changes


def _leader_key(inst: Instance | None) -> tuple[str, int, str, bool] | None:
    return None if inst is None else (inst.ip, inst.port, inst.cluster, inst.ephemeral)


def _leaders_unaffected(
    found: list[tuple[EventKind, Instance | None, str, ServiceMeta | None]], before: Leaders
) -> bool:
    """Whether no leader can have moved: only updates (a serving instance stays serving, keeps
    its place in the order), none of them to a current leader. Registrations, state flips,
    removals and settings (pins) recompute: O(n) over the stored sets."""
    current = {_leader_key(inst) for inst in before.values()}
    return all(
        kind is EventKind.UPDATE and _leader_key(inst) not in current for kind, inst, _, _ in found
    )


class ChangeFeed:
    def __init__(
        self,
        retention_s: float = DEFAULT_RETENTION_S,
        max_events: int = DEFAULT_MAX_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retention_s <= 0 or max_events < 1:
            raise ValueError("the change feed needs a positive retention and size")
        self.retention_s = retention_s
        self.max_events = max_events
        self._clock = clock
        # This member's incarnation: positions from another member or an earlier run of this
        # one are not positions in this feed.
        self.epoch = f"{int(time.time() * 1000):x}"
        self._lock = threading.Lock()
        self._events: list[FeedEvent] = []
        self._head = 0  # events[:head] are trimmed, kept until compaction
        self._index = 0  # the last index given
        self._views: dict[ServiceName, ServiceView] = {}
        self._leaders: dict[ServiceName, Leaders] = {}
        self.stats = FeedStats()
        # Told the last index after each append, on the notifier thread (see the module doc).
        self.sinks: ListenerList[int] = ListenerList("feed")

    # -- writer side (notifier thread) ------------------------------------------------------

    def on_view(self, view: ServiceView) -> None:
        """The registry's listener: append what changed from the service's previous view."""
        self.stats.views_seen += 1
        name = view.name
        old = self._views.get(name)
        found: list[tuple[EventKind, Instance | None, str, ServiceMeta | None]] = []
        old_pers = old.persistent_map() if old is not None else {}
        old_eph = old.ephemeral_map() if old is not None else {}
        for kind, inst in _instance_kinds(old_pers, view.persistent_map()):
            found.append((kind, as_shown(inst), "", None))
        for kind, inst in _instance_kinds(old_eph, view.ephemeral_map()):
            found.append((kind, as_shown(inst), "", None))
        old_meta = old.meta if old is not None else None
        if view.meta is not old_meta and view.meta != old_meta:
            found.append((EventKind.SERVICE, None, "", view.meta))
        before = self._leaders.get(name, {})
        if old is not None and view.exists and _leaders_unaffected(found, before):
            now_leading = before
        else:
            now_leading = leaders(view) if view.exists else {}
        for scope in {**before, **now_leading}:
            new_leader = now_leading.get(scope)
            if _leader_key(before.get(scope)) != _leader_key(new_leader):
                found.append((EventKind.LEADER, new_leader, scope, None))
        last = self._append(view, now_leading, found)
        if found:
            self.sinks.call(last)

    def _append(
        self,
        view: ServiceView,
        now_leading: Leaders,
        found: Iterable[tuple[EventKind, Instance | None, str, ServiceMeta | None]],
    ) -> int:
        name, revision = view.name, view.revision
        now = self._clock()
        with self._lock:
            # The views move with the index, under one lock: ``current`` never returns a view
            # newer than its index (a reader would then see that change twice).
            if view.exists:
                self._views[name] = view
                self._leaders[name] = now_leading
            else:
                self._views.pop(name, None)
                self._leaders.pop(name, None)
            index = self._index
            for kind, inst, scope, meta in found:
                index += 1
                self._events.append(FeedEvent(index, name, revision, kind, inst, scope, meta, now))
                self.stats.appended += 1
            self._index = index
            self._trim(now)
            return index

    def _trim(self, now: float) -> None:
        """Drop what retention and the size bound say (under the lock)."""
        events, head = self._events, self._head
        horizon = now - self.retention_s
        while head < len(events) and events[head].at < horizon:
            head += 1
        over = len(events) - head - self.max_events
        if over > 0:
            head += over
            self.stats.trimmed_early += over
        self.stats.trimmed += head - self._head
        # Compact when the trimmed prefix is the larger part: amortised O(1) per event.
        if head > 1024 and head * 2 > len(events):
            del events[:head]
            head = 0
        self._head = head

    # -- reader side (any thread) -----------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self._index

    def oldest_index(self) -> int:
        """The index of the oldest event still kept (last_index + 1 when none is)."""
        with self._lock:
            self._trim(self._clock())
            if self._head < len(self._events):
                return self._events[self._head].index
            return self._index + 1

    def size(self) -> int:
        with self._lock:
            return len(self._events) - self._head

    def covers(self, index: int) -> bool:
        """Whether every event after ``index`` is still kept (a reader at ``index`` can go on)."""
        return self.oldest_index() <= index + 1 and index <= self._index

    def since(self, index: int, limit: int | None = None) -> list[FeedEvent]:
        """The kept events after ``index``, oldest first (at most ``limit``)."""
        with self._lock:
            events, head = self._events, self._head
            if head >= len(events):
                return []
            first = events[head].index
            start = head + max(0, index + 1 - first)
            end = len(events) if limit is None else min(len(events), start + limit)
            return events[start:end]

    def current(self, scope: Scope) -> tuple[int, list[ServiceView]]:
        """The last index and the views it reflects, for the services ``scope`` covers: what a
        new reader starts from, consistent with the events after that index."""
        with self._lock:
            index = self._index
            views = [v for n, v in self._views.items() if scope.matches(n)]
        views.sort(key=lambda v: v.name.grouped)
        return index, views

    def leaders_of(self, name: ServiceName) -> Leaders:
        """The leaders as of the last event (what the last ``leader`` events said)."""
        return dict(self._leaders.get(name, {}))

    def status(self) -> dict[str, int | float | str]:
        with self._lock:
            size = len(self._events) - self._head
            oldest = self._events[self._head].index if size else self._index + 1
        return {
            "epoch": self.epoch,
            "lastIndex": self._index,
            "oldestIndex": oldest,
            "size": size,
            "retentionSeconds": self.retention_s,
            "maxEvents": self.max_events,
            "appended": self.stats.appended,
            "trimmed": self.stats.trimmed,
            "trimmedEarly": self.stats.trimmed_early,
        }
