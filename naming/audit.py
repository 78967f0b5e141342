"""The audit trail: who changed what, when, where from and why (issue #10, item 6).

Every write reaches the consistency delegate (``DelegateConsistencyService.submit``), which hands
it to its write observers; :class:`AuditLog` is one. The actor is not a parameter of any core
call: the edge that received the request (or the background job that decided) sets it once in a
context variable with :func:`acting`, and the observer reads it. A write with no actor set is
attributed to the system with reason ``unattributed`` (a gap to fix, made visible).

The hot path pays O(1) per affected object: a ring append of a small record holding references
to the immutable values involved (the affected instance before and after, never a whole instance
set). Entries (:class:`AuditEntry`) are summarised from these records lazily, by the writer
thread or by the first query that needs them.

Retention: an in-memory ring bounded by count (``NAMING_AUDIT_MAX_ENTRIES``) and age
(``NAMING_AUDIT_MAX_AGE_H``), persisted by one writer thread that appends JSON lines to
``<data_dir>/audit.jsonl`` (rotated to ``audit.jsonl.1`` once it holds the maximum count) and
reloaded at start, so a restart keeps the history. Entries still in memory when the process is
killed (at most one flush interval) are lost; an audit line is never worth an fsync per write.

Password hashes never reach an entry: account changes are summarised from their ``encode()``
dict with every field named like a password, hash, secret or token dropped.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from consistency.datum import Datum, DatumKey, KeyKind
from lib.interning import Shared
from lib.loops import PeriodicLoop
from naming.domain import (
    ClusterConfig,
    Instance,
    InstanceKey,
    Namespace,
    ServiceMeta,
    shared_metadata,
    shared_port,
    shared_weight,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_AGE_H = 168.0
FLUSH_INTERVAL_S = 1.0
FILE_NAME = "audit.jsonl"
MAX_SUMMARY_KEYS = 16
MAX_SUMMARY_CHARS = 128
MAX_SHARED = 65_536  # actors, keys the records share (lib.interning: then starts over)

VIA_API = "api"
VIA_CONSOLE = "console"
VIA_PEER = "peer"
VIA_SYSTEM = "system"

# Background reasons (``acting(via="system", reason=...)``).
HEARTBEAT_EXPIRY = "heartbeat expiry"
HEALTH_CHECK = "health-check verdict"
AUTO_CLEAN = "auto-clean"
BEAT = "beat"
# Connection-bound instances (naming.leases): released when their connection closed, or removed
# by the lease reaper once orphaned (holder member down, connection gone) past the grace.
CONNECTION_CLOSED = "connection closed"
LEASE_EXPIRY = "lease expiry"

# One encoder for the writer thread: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)

_SECRET_FIELD = re.compile(r"pass|hash|secret|token|salt", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Who is acting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    user: str
    address: str = ""
    via: str = VIA_SYSTEM
    reason: str = ""


UNATTRIBUTED = Actor("system", "", VIA_SYSTEM, "unattributed")

_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("audit_actor", default=UNATTRIBUTED)


def current_actor() -> Actor:
    return _actor.get()


class ActingScope:
    """Sets the actor for the ``with`` block. A class rather than a generator-based context
    manager: every v1 request enters one, and this costs a third of ``contextlib``'s."""

    __slots__ = ("_token", "actor")

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._token: contextvars.Token[Actor] | None = None

    def __enter__(self) -> Actor:
        self._token = _actor.set(self.actor)
        return self.actor

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _actor.reset(self._token)
            self._token = None


def acting(
    user: str = "system", address: str = "", via: str = VIA_SYSTEM, reason: str = ""
) -> ActingScope:
    """Attribute every write made inside the block (in this thread or task) to this actor."""
    return ActingScope(Actor(user, address, via, reason))


def because(reason: str) -> ActingScope:
    """Keep who is acting, give another reason (a beat that re-registers an instance)."""
    outer = _actor.get()
    return ActingScope(Actor(outer.user, outer.address, outer.via, reason))


# ---------------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    time_ms: int
    member: str
    user: str
    address: str
    via: str
    reason: str
    kind: str  # instance, service, cluster, switch, namespace, user, role, permission, ...
    object: str  # e.g. public/DEFAULT_GROUP@@svc/DEFAULT/10.0.0.1:8080, user/alice
    action: str
    namespace: str = ""
    service: str = ""  # grouped name
    cluster: str = ""
    instance: str = ""  # ip:port
    before: Any = None  # a short dict or string; None: the object did not exist / not known
    after: Any = None

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every summary, and the writer thread calls
        # this once per audited write. ``time``: ms since the epoch, as Nacos renders times.
        return {
            "time": self.time_ms,
            "member": self.member,
            "user": self.user,
            "address": self.address,
            "via": self.via,
            "reason": self.reason,
            "kind": self.kind,
            "object": self.object,
            "action": self.action,
            "namespace": self.namespace,
            "service": self.service,
            "cluster": self.cluster,
            "instance": self.instance,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Read back what :meth:`to_json` wrote (the file, a peer's answer)."""
        # Interned: a reloaded trail repeats its members, users, reasons and services.
        texts = {name: sys.intern(str(data.get(name, ""))) for name in _TEXT_FIELDS}
        return cls(
            time_ms=int(data["time"]), before=data.get("before"), after=data.get("after"), **texts
        )


_TEXT_FIELDS = tuple(
    name for name in AuditEntry.__dataclass_fields__ if name not in ("time_ms", "before", "after")
)


class _Record:
    """What the hot path stores: references only; summarised into an entry on demand.

    Six slots and nothing the record alone holds (issue #11, memory): the instance it names is
    read back from the instance it keeps (:func:`_item`), the actor and the key are the log's
    shared copies (:meth:`AuditLog._shared`). A record with an item no value carries is an
    :class:`_ItemRecord`; one holding a ready entry, an :class:`_EntryRecord`."""

    __slots__ = ("actor", "after", "before", "change", "key", "ms")

    def __init__(
        self, ms: int, actor: Actor, key: DatumKey | None, change: Any, before: Any, after: Any
    ) -> None:
        self.ms = ms
        self.actor = actor
        self.key = key
        self.change = change
        self.before = before
        self.after = after


class _ItemRecord(_Record):
    """A record of one named part of a document (a service's cluster, a namespace)."""

    __slots__ = ("item",)

    def __init__(
        self, ms: int, actor: Actor, key: DatumKey, change: Any, item: str, before: Any, after: Any
    ) -> None:
        super().__init__(ms, actor, key, change, before, after)
        self.item = item


class _EntryRecord(_Record):
    """A ready entry: a write that did not pass the consistency seam, or one reloaded."""

    __slots__ = ("entry",)

    def __init__(self, actor: Actor, entry: AuditEntry) -> None:
        super().__init__(entry.time_ms, actor, None, None, None, None)
        self.entry = entry


def _instance(record: _Record) -> Instance | None:
    """The instance an instance record is about (either side carries its key: the key tuple
    itself is not stored, it weighed 64 bytes per record)."""
    if type(record) is not _Record or record.key is None:
        return None
    inst = record.after if record.after is not None else record.before
    return inst if isinstance(inst, Instance) else None


def _item(record: _Record) -> Any:
    """What part of the key's value a record is about: an instance's key, a cluster's name,
    a namespace id; None for a whole document."""
    if type(record) is _ItemRecord:
        return record.item
    inst = _instance(record)
    return None if inst is None else inst.key


def _entry(record: _Record) -> AuditEntry | None:
    return record.entry if type(record) is _EntryRecord else None


# ---------------------------------------------------------------------------------------------
# Summaries (query time / writer thread, never on the write path)
# ---------------------------------------------------------------------------------------------


def _short(value: Any) -> Any:
    if not value and isinstance(value, (dict, MappingProxyType)):
        return {}  # most metadata: skip the generic walk
    if isinstance(value, str):
        return value if len(value) <= MAX_SUMMARY_CHARS else value[: MAX_SUMMARY_CHARS - 1] + "…"
    if isinstance(value, Mapping):
        return {
            str(k): _short(v)
            for k, v in list(value.items())[:MAX_SUMMARY_KEYS]
            if not _SECRET_FIELD.search(str(k))
        }
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in list(value)[:MAX_SUMMARY_KEYS]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _short(str(value))


def _instance_summary(inst: Instance | None) -> dict[str, Any] | None:
    if inst is None:
        return None
    return {
        "weight": inst.weight,
        "healthy": inst.healthy,
        "enabled": inst.enabled,
        "ephemeral": inst.ephemeral,
        "metadata": _short(inst.metadata),
    }


def _meta_summary(meta: ServiceMeta | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    return {
        "protectThreshold": meta.protect_threshold,
        "metadata": _short(meta.metadata),
        "selector": _short(meta.selector.to_json()),
        "clusters": sorted(meta.clusters)[:MAX_SUMMARY_KEYS],
        **({"pinnedLeaders": _short(meta.pinned_leaders)} if meta.pinned_leaders else {}),
    }


def _cluster_summary(config: ClusterConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {
        "healthChecker": config.health_checker.type.value,
        "checkPort": config.check_port,
        "useInstancePort": config.use_instance_port,
        "metadata": _short(config.metadata),
    }


def _namespace_summary(namespace: Namespace | None) -> dict[str, Any] | None:
    if namespace is None:
        return None
    return {"name": _short(namespace.name), "description": _short(namespace.description)}


def change_fields(change: Any) -> dict[str, Any]:
    """A change's encoded fields without its type and without anything secret.

    Used for every change kind this module has no specific summary for (accounts,
    namespaces, switches): a field named like a password or hash is dropped and replaced by
    the one fact worth keeping, ``password: changed``."""
    try:
        raw = change.encode()
    except Exception:  # a change that cannot encode itself is summarised by its type only
        return {}
    fields: dict[str, Any] = {}
    secret = False
    for name, value in raw.items():
        if name == "type":
            continue
        if _SECRET_FIELD.search(str(name)):
            secret = True
            continue
        fields[str(name)] = _short(value)
    if secret:
        fields["password"] = "changed"
    return fields


def _type_name(change: Any) -> str:
    if isinstance(change, str):
        return change  # a record that kept only its change's type name
    return str(getattr(change, "type_name", type(change).__name__))


_ACTIONS = {
    "remove_instances": "deregister",
    "update_instance": "update",
    "patch_instance": "update",
    "update_metadata": "metadata",
    "set_health": "health",
    "create_service": "create",
    "ensure_service": "create",
    "update_service": "update",
    "pin_leader": "pin leader",
    "unpin_leader": "unpin leader",
    "set_switch": "update",
}

# Accounts and namespace changes: which object kind a type name is about.
_ACCOUNT_KINDS = (
    ("permission", "permission"),
    ("role", "role"),
    ("namespace", "namespace"),
    ("user", "user"),
    ("password", "user"),
    ("token", "user"),
)


def _public(namespace: str) -> str:
    return namespace or "public"


def _instance_object(key: DatumKey, item: InstanceKey | Instance) -> str:
    return f"{_public(key.namespace)}/{key.service}/{item.cluster}/{item.ip}:{item.port}"


def _locate(record: _Record) -> tuple[str, str]:
    """(kind, object text) of a record: what the filters need, fast for the common case."""
    inst = _instance(record)
    if inst is not None:
        assert record.key is not None  # _instance() checked
        return "instance", _instance_object(record.key, inst)
    entry = _entry(record)
    if entry is not None:
        return entry.kind, entry.object
    entry = _summarise(record, "", detail=False)
    return entry.kind, entry.object


def _summarise(record: _Record, member: str, detail: bool = True) -> AuditEntry:
    """The entry of a record; without ``detail``, no before/after (enough to filter on)."""
    entry = _entry(record)
    if entry is not None:
        return entry
    if not detail:
        return _summarise_parts(record, member, _no_summary)
    return _summarise_parts(record, member, _summary)


def _summary(summarise: Callable[[Any], Any], value: Any) -> Any:
    return summarise(value)


def _no_summary(summarise: Callable[[Any], Any], value: Any) -> Any:
    return None


def _summarise_parts(
    record: _Record, member: str, summary: Callable[[Callable[[Any], Any], Any], Any]
) -> AuditEntry:
    actor = record.actor
    key = record.key
    change = record.change
    type_name = _type_name(change)
    base: dict[str, Any] = {
        "time_ms": record.ms,
        "member": member,
        "user": actor.user,
        "address": actor.address,
        "via": actor.via,
        "reason": actor.reason,
    }
    if key is None:
        return AuditEntry(kind="unknown", object="", action=type_name, **base)
    namespace = key.namespace
    service = key.service
    service_object = f"{_public(namespace)}/{service}"
    if key.kind in (KeyKind.EPHEMERAL_INSTANCES, KeyKind.PERSISTENT_INSTANCES):
        item = _item(record)
        if isinstance(item, InstanceKey):
            before, after = record.before, record.after
            if type_name == "upsert_instance":
                action = "register" if before is None else "re-register"
            elif after is None:
                action = "deregister"
            else:
                action = _ACTIONS.get(type_name, type_name)
            address = f"{item.ip}:{item.port}"
            return AuditEntry(
                kind="instance",
                object=_instance_object(key, item),
                action=action,
                namespace=namespace,
                service=service,
                cluster=item.cluster,
                instance=address,
                before=summary(_instance_summary, before),
                after=summary(_instance_summary, after),
                **base,
            )
        # A whole instance list cleared (service deleted or auto-cleaned).
        kind = "ephemeral" if key.ephemeral else "persistent"
        return AuditEntry(
            kind="service",
            object=service_object,
            action="clear instances",
            namespace=namespace,
            service=service,
            before={f"{kind} instances": record.before},
            after={f"{kind} instances": record.after},
            **base,
        )
    if key.kind is KeyKind.SERVICE_META:
        if type_name == "upsert_cluster":
            name = str(_item(record))
            return AuditEntry(
                kind="cluster",
                object=f"{service_object}/{name}",
                action="create" if record.before is None else "update",
                namespace=namespace,
                service=service,
                cluster=name,
                before=summary(_cluster_summary, record.before),
                after=summary(_cluster_summary, record.after),
                **base,
            )
        action = "delete" if record.after is None else _ACTIONS.get(type_name, type_name)
        return AuditEntry(
            kind="service",
            object=service_object,
            action=action,
            namespace=namespace,
            service=service,
            before=summary(_meta_summary, record.before),
            after=summary(_meta_summary, record.after),
            **base,
        )
    if key.kind is KeyKind.NAMESPACES:
        ns_id = str(_item(record))
        before, after = record.before, record.after
        return AuditEntry(
            kind="namespace",
            object=f"namespace/{ns_id}",
            action="create" if before is None else "delete" if after is None else "update",
            namespace=ns_id,
            before=summary(_namespace_summary, before),
            after=summary(_namespace_summary, after),
            **base,
        )
    fields = change_fields(change)
    if key.kind is KeyKind.SWITCHES:
        entry = str(fields.get("entry", ""))
        return AuditEntry(
            kind="switch",
            object=f"switch/{entry}",
            action="update",
            after=fields.get("value"),
            **base,
        )
    kind, obj = _account_object(key, type_name, fields)
    return AuditEntry(
        kind=kind,
        object=obj,
        action=type_name,
        namespace=obj.partition("/")[2] if kind == "namespace" else "",
        after=fields or None,
        **base,
    )


def _account_object(key: DatumKey, type_name: str, fields: Mapping[str, Any]) -> tuple[str, str]:
    """The object of a change this module has no specific summary for, from its fields."""
    kind = next((k for word, k in _ACCOUNT_KINDS if word in type_name), str(key.kind.value))

    def first(*names: str) -> str:
        return next((str(fields[n]) for n in names if fields.get(n) not in (None, "")), "")

    if kind == "permission":
        parts = [first("role"), first("resource"), first("action")]
        return kind, "permission/" + "/".join(parts)
    if kind == "role":
        return kind, f"role/{first('role')}/{first('username', 'user')}".rstrip("/")
    if kind == "user":
        return kind, f"user/{first('username', 'user', 'name')}"
    if kind == "namespace":
        return kind, f"namespace/{first('namespace_id', 'namespaceId', 'id', 'namespace')}"
    return kind, f"{kind}/{type_name}"


# ---------------------------------------------------------------------------------------------
# Capture (the write path)
# ---------------------------------------------------------------------------------------------


def _affected_instances(change: Any, type_name: str, after: Any) -> Sequence[InstanceKey]:
    """Only the keys a change names: never a diff of two whole instance sets."""
    if type_name in ("upsert_instance", "update_instance"):
        return (change.instance.key,)
    if type_name == "patch_instance":
        return (change.key,)
    if type_name == "remove_instances":
        return tuple(change.keys)
    if type_name == "remove_leased":
        return tuple(k for k, _ in change.entries)
    if type_name == "set_health":
        return tuple(k for k, _ in change.verdicts)
    if type_name == "update_metadata":
        return tuple(change.keys) if change.keys is not None else tuple(after or ())
    return ()


def _value(datum: Datum | None) -> Any:
    return None if datum is None else datum.value


# ---------------------------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    object: str = ""  # substring of the object text (a prefix such as "public/DEFAULT_GROUP@@a")
    user: str = ""
    kind: str = ""
    since_ms: int | None = None
    until_ms: int | None = None

    def admits(self, record: _Record, cutoff_ms: int) -> bool:
        """Cheap tests first; the object text is built only when a filter needs it."""
        ms = record.ms
        if ms < cutoff_ms:
            return False
        if self.since_ms is not None and ms < self.since_ms:
            return False
        if self.until_ms is not None and ms > self.until_ms:
            return False
        if self.user and record.actor.user != self.user:
            return False
        if not (self.kind or self.object):
            return True
        kind, obj = _locate(record)
        if self.kind and kind != self.kind:
            return False
        return not self.object or self.object in obj


@dataclass(frozen=True, slots=True)
class AuditPage:
    total: int
    entries: list[AuditEntry] = field(default_factory=list)


@dataclass
class AuditStats:
    recorded: int = 0
    dropped_by_age: int = 0
    written: int = 0
    write_errors: int = 0
    loaded: int = 0
    last_error: str = ""


class AuditLog:
    """The write observer that records the audit trail of this member.

    Thread-safety: :meth:`on_write` runs on request and background threads at once and only
    appends to deques (atomic in CPython). The writer thread (owned here, started by
    :meth:`start`, stopped and flushed by :meth:`stop`) is the only one that trims by age and
    writes the file; queries copy the ring before reading it."""

    def __init__(
        self,
        member: str,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_h: float = DEFAULT_MAX_AGE_H,
        data_dir: Path | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.member = member
        self.max_entries = max_entries
        self.max_age_ms = int(max_age_h * 3_600_000)
        self.path = None if data_dir is None else data_dir / FILE_NAME
        self._clock_ms = clock_ms
        self._ring: deque[_Record] = deque(maxlen=max_entries)
        self._unwritten: deque[_Record] = deque()
        self._file_lines = 0
        self._write_lock = threading.Lock()
        self._loop: PeriodicLoop | None = None
        self.stats = AuditStats()
        # One copy of each actor and key for the records to share: the edge builds both anew
        # for every request, and kept per record they weighed ~190 bytes (issue #11, memory).
        self._actors: Shared[tuple[str, str, str, str], Actor] = Shared(MAX_SHARED)
        self._keys: Shared[tuple[KeyKind, str, str], DatumKey] = Shared(MAX_SHARED)
        self._last_shared: tuple[Actor, Actor] = (UNATTRIBUTED, UNATTRIBUTED)

    # -- recording (hot path) ----------------------------------------------------------------

    def on_write(self, key: DatumKey, change: Any, before: Datum | None, after: Datum) -> None:
        ms = self._clock_ms()
        actor, key = self._shared(_actor.get(), key)
        old = _value(before)
        new: Any = after.value
        # Records of instances, services and namespaces keep the change's type name only (a
        # shared string): the change object would pin a second copy of the instance.
        type_name = _type_name(change)
        if key.kind is KeyKind.EPHEMERAL_INSTANCES or key.kind is KeyKind.PERSISTENT_INSTANCES:
            if new is None or type_name == "clear":
                if old is not None:
                    self._add(_Record(ms, actor, key, type_name, len(old), 0))
                return
            for item in _affected_instances(change, type_name, new):
                was = old.get(item) if old is not None else None
                now = new.get(item)
                if was is not now:  # the same object: nothing changed (a no-op verdict)
                    self._add(_Record(ms, actor, key, type_name, was, now))
            return
        if key.kind is KeyKind.SERVICE_META:
            if old is new:
                return  # e.g. ensure_service on an existing service
            if type_name == "upsert_cluster":
                name = change.config.name
                was = old.clusters.get(name) if old is not None else None
                now = new.clusters.get(name) if new is not None else None
                self._add(_ItemRecord(ms, actor, key, type_name, name, was, now))
                return
            self._add(_Record(ms, actor, key, type_name, old, new))
            return
        if key.kind is KeyKind.NAMESPACES:
            ns = getattr(change, "namespace", None)
            ns_id = ns.id if isinstance(ns, Namespace) else str(getattr(change, "namespace_id", ""))
            was = old.get(ns_id) if old is not None else None
            now = new.get(ns_id) if new is not None else None
            self._add(_ItemRecord(ms, actor, key, type_name, ns_id, was, now))
            return
        # Switches and accounts: summarised from the change alone (the accounts document is
        # large and holds password hashes: never kept here).
        self._add(_Record(ms, actor, key, change, None, None))

    def _shared(self, actor: Actor, key: DatumKey) -> tuple[Actor, DatumKey]:
        """The log's copies of an equal actor and key. A background job's one actor for many
        writes is found by identity first (one tuple, read and replaced whole, so threads
        never see half of it)."""
        last = self._last_shared
        if last[0] is actor:
            shared = last[1]
        else:
            fields = (actor.user, actor.address, actor.via, actor.reason)
            shared = self._actors.share(fields, actor)
            self._last_shared = (actor, shared)
        return shared, self._keys.share((key.kind, key.namespace, key.service), key)

    def _add(self, record: _Record) -> None:
        self._ring.append(record)
        if self.path is not None:
            self._unwritten.append(record)
        self.stats.recorded += 1

    def record(self, entry: AuditEntry) -> None:
        """Record a ready entry (writes that do not pass the consistency seam)."""
        self._add(_EntryRecord(_actor.get(), entry))

    # -- queries -----------------------------------------------------------------------------

    def _entry(self, record: _Record) -> AuditEntry:
        # Not cached on the record: a summary weighs several times the references it is built
        # from, and the ring holds 100,000 of them by default.
        return _summarise(record, self.member)

    def query(
        self, filters: AuditFilter | None = None, page_no: int = 1, page_size: int = 100
    ) -> AuditPage:
        """Matching entries, newest first, one page of them; ``total`` counts every match."""
        filters = filters or AuditFilter()
        cutoff = self._clock_ms() - self.max_age_ms
        start = (max(page_no, 1) - 1) * page_size
        end = start + page_size
        total = 0
        page: list[AuditEntry] = []
        for record in reversed(list(self._ring)):
            # Writes of concurrent threads may land a millisecond out of order: no early stop.
            if not filters.admits(record, cutoff):
                continue
            if start <= total < end:
                page.append(self._entry(record))
            total += 1
        return AuditPage(total, page)

    def __len__(self) -> int:
        return len(self._ring)

    # -- retention and persistence (writer thread) -------------------------------------------

    def start(self) -> None:
        """Load the file and start the writer thread (owned by this log; :meth:`stop` ends it)."""
        if self.path is None:
            return
        self.load()
        self._loop = PeriodicLoop("audit-writer", self.flush, FLUSH_INTERVAL_S, owner="AuditLog")
        self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop.join(timeout=5)
            self._loop = None
        self.flush()

    def trim(self) -> None:
        cutoff = self._clock_ms() - self.max_age_ms
        ring = self._ring
        while ring and ring[0].ms < cutoff:
            ring.popleft()
            self.stats.dropped_by_age += 1

    def flush(self) -> None:
        """Summarise and append what was recorded since the last flush; trim by age."""
        self.trim()
        if self.path is None:
            self._unwritten.clear()
            return
        with self._write_lock:
            lines = []
            while self._unwritten:
                record = self._unwritten.popleft()
                raw: list[Any] | dict[str, Any] | None = _raw_instance_line(record)
                if raw is None:
                    raw = self._entry(record).to_json()
                lines.append(_ENCODER.encode(raw))
            if not lines:
                return
            try:
                self._append(lines)
            except OSError as exc:
                self.stats.write_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("audit lines not written to %s: %s", self.path, exc)

    def _append(self, lines: list[str]) -> None:
        assert self.path is not None
        if self._file_lines + len(lines) > self.max_entries and self.path.exists():
            # Two files together always hold at least the last ``max_entries`` lines.
            os.replace(self.path, self.path.with_name(FILE_NAME + ".1"))
            self._file_lines = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        self._file_lines += len(lines)
        self.stats.written += len(lines)

    def load(self) -> None:
        """Reload the persisted entries (older file first), keeping the retention bounds."""
        assert self.path is not None
        cutoff = self._clock_ms() - self.max_age_ms
        loaded: list[_Record] = []
        for path in (self.path.with_name(FILE_NAME + ".1"), self.path):
            try:
                with open(path, encoding="utf-8") as source:
                    count = 0
                    for line in source:
                        count += 1
                        try:
                            data = json.loads(line)
                            if isinstance(data, list):
                                record = _record_of_raw_line(data, self._shared)
                                if record.ms >= cutoff:
                                    loaded.append(record)
                                continue
                            entry = AuditEntry.from_json(data)
                        except (ValueError, KeyError, TypeError, IndexError):
                            continue  # a torn last line after a crash
                        if entry.time_ms >= cutoff:
                            actor = Actor(entry.user, entry.address, entry.via, entry.reason)
                            loaded.append(_EntryRecord(actor, entry))
            except FileNotFoundError:
                continue
            if path == self.path:
                self._file_lines = count
        current = list(self._ring)
        self._ring.clear()
        self._ring.extend(loaded[-self.max_entries :])
        self._ring.extend(current)
        self.stats.loaded = len(loaded)


# -- the compact line of an instance write ------------------------------------------------------
#
# Instance writes are nearly all of the trail, and summarising each one into an entry on the
# writer thread cost ~35 µs (measured: 5 % of a core at 1,500 registrations/s, which the
# register benchmark showed). Their line is a flat list of the record's own fields instead
# (~5 µs), rebuilt into a record at load, so a reloaded entry is summarised by the same code
# as a live one. Its first element says which form it is.

_RAW_INSTANCE = 1


def _raw_instance(inst: Instance | None) -> list[Any] | None:
    if inst is None:
        return None
    return [inst.weight, inst.healthy, inst.enabled, inst.ephemeral, dict(inst.metadata)]


def _raw_instance_line(record: _Record) -> list[Any] | None:
    key, item = record.key, _instance(record)
    if key is None or item is None or not isinstance(record.change, str):
        return None
    actor = record.actor
    return [
        _RAW_INSTANCE,
        record.ms,
        actor.user,
        actor.address,
        actor.via,
        actor.reason,
        key.encode(),
        record.change,
        item.cluster,
        item.ip,
        item.port,
        _raw_instance(record.before),
        _raw_instance(record.after),
    ]


def _instance_of_raw(item: InstanceKey, raw: list[Any] | None) -> Instance | None:
    if raw is None:
        return None
    weight, healthy, enabled, ephemeral, metadata = raw
    return Instance(
        item.ip,
        item.port,
        item.cluster,
        shared_weight(float(weight)),
        bool(healthy),
        bool(enabled),
        bool(ephemeral),
        shared_metadata({str(k): str(v) for k, v in metadata.items()}),
    )


def _record_of_raw_line(
    data: list[Any], shared: Callable[[Actor, DatumKey], tuple[Actor, DatumKey]]
) -> _Record:
    if data[0] != _RAW_INSTANCE:
        raise ValueError("unknown audit line form")
    _, ms, user, address, via, reason, key_text, type_name, cluster, ip, port, was, now = data
    # Shared copies of what reloaded records repeat (a full ring is reloaded at every start).
    item = InstanceKey(sys.intern(str(cluster)), str(ip), shared_port(int(port)))
    actor, key = shared(
        Actor(str(user), str(address), str(via), str(reason)), DatumKey.decode(str(key_text))
    )
    return _Record(
        int(ms),
        actor,
        key,
        sys.intern(str(type_name)),
        _instance_of_raw(item, was),
        _instance_of_raw(item, now),
    )


def merge_newest_first(pages: Sequence[Sequence[AuditEntry]]) -> list[AuditEntry]:
    """Entries of several members in one list, newest first (ties: by member)."""
    merged = [e for page in pages for e in page]
    merged.sort(key=lambda e: (-e.time_ms, e.member))
    return merged
