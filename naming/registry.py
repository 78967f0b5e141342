"""The read model: Service → Cluster → Instance, rebuilt by a notifier listener.

Each service is an immutable :class:`ServiceView` replaced as a whole when one of its three
stored values changes (meta via Raft, persistent list via Raft, ephemeral list via Distro), so a
reader on a request thread takes one reference and sees a consistent service without a lock.
Building a view clamps weights (above 10000 → 10000; between 0 and 0.01 → 0.01), orders the
instances stably and bumps the service revision; the checksum and rendered responses are derived
lazily and cached on the view, so a burst of writes pays for them once.

Threads: ``on_datum`` runs only on the notifier thread (one writer); readers are request threads
and the sweeper, which only take references.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, KeysView, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

from consistency.datum import Datum, DatumKey, KeyKind
from lib.listeners import ListenerList
from naming.codec import EMPTY_INSTANCES, InstanceSet, service_of
from naming.domain import (
    MAX_WEIGHT,
    MIN_POSITIVE_WEIGHT,
    ClusterConfig,
    Instance,
    InstanceKey,
    Namespace,
    ServiceMeta,
    ServiceName,
    Switches,
    as_shown,
    clamp_weight,
)

# The settings of a service without stored meta: immutable, so one serves every view (a view
# is built per write, and a default ServiceMeta allocates three fields).
_NO_META = ServiceMeta()


def _clamped(instances: InstanceSet) -> list[Instance]:
    """The stored order (registration order) is kept: stable between calls, and no sort on
    every rebuild of a large service."""
    out = list(instances.values())
    for n, inst in enumerate(out):
        weight = inst.weight
        if weight > MAX_WEIGHT or 0.0 < weight < MIN_POSITIVE_WEIGHT:
            out[n] = inst.with_changes(weight=clamp_weight(weight))
    return out


class ServiceView:
    """One service as clients see it. Immutable after construction.

    Construction is O(1): the instance lists, the cluster grouping and the lookup index are
    derived on first use and cached, so a burst of registrations to a large service does not
    pay an O(n) rebuild per write when nobody reads in between.
    """

    def __init__(
        self,
        name: ServiceName,
        meta: ServiceMeta | None,
        ephemeral: InstanceSet | None,
        persistent: InstanceSet | None,
        revision: int,
    ) -> None:
        self.name = name
        self.meta = meta
        self.settings = meta or _NO_META
        self.revision = revision
        self._ephemeral_set = ephemeral or EMPTY_INSTANCES
        self._persistent_set = persistent or EMPTY_INSTANCES
        self.exists = meta is not None or ephemeral is not None or persistent is not None
        self.instance_count = len(self._ephemeral_set) + len(self._persistent_set)
        self.response_cache: dict[Any, Any] = {}

    @cached_property
    def ephemeral(self) -> list[Instance]:
        return _clamped(self._ephemeral_set)

    @cached_property
    def persistent(self) -> list[Instance]:
        return _clamped(self._persistent_set)

    @cached_property
    def clusters(self) -> dict[str, list[Instance]]:
        # Nacos order inside a cluster: the persistent set, then the ephemeral set.
        clusters: dict[str, list[Instance]] = {name: [] for name in self.settings.clusters}
        for inst in self.persistent:
            clusters.setdefault(inst.cluster, []).append(inst)
        for inst in self.ephemeral:
            clusters.setdefault(inst.cluster, []).append(inst)
        return clusters

    def instances(self) -> Iterable[Instance]:
        for members in self.clusters.values():
            yield from members

    def find(self, key: InstanceKey, ephemeral: bool | None = None) -> Instance | None:
        """By (cluster, ip, port); the persistent list first, as Nacos searches."""
        found = None
        if ephemeral is not True:
            found = self._persistent_set.get(key)
        if found is None and ephemeral is not False:
            found = self._ephemeral_set.get(key)
        return None if found is None else as_shown(found)

    def ephemeral_keys(self) -> KeysView[InstanceKey]:
        """The ephemeral keys as stored (set operations run in C: the expiry diffs them)."""
        return self._ephemeral_set.keys()

    def ephemeral_map(self) -> Mapping[InstanceKey, Instance]:
        """The stored ephemeral instances by key, in registration order, weights not clamped
        (no copy: the expiry reads only their health and timeouts)."""
        return self._ephemeral_set

    def persistent_map(self) -> Mapping[InstanceKey, Instance]:
        """The stored persistent instances by key, in registration order, weights not clamped."""
        return self._persistent_set

    def cluster_config(self, cluster: str) -> ClusterConfig:
        return self.settings.clusters.get(cluster) or ClusterConfig(cluster)

    def healthy_count(self) -> int:
        return sum(1 for i in self.instances() if i.healthy)

    @cached_property
    def checksum(self) -> str:
        """MD5 over the service settings and the sorted ``ip:port_weight_healthy_cluster`` list.

        Same ingredients as Nacos ``Service.recalculateChecksum``; no client interprets the
        value, so we use sorted JSON for the service part instead of Java HashMap order.
        """
        service_part = json.dumps(
            {
                "name": self.name.grouped,
                "protectThreshold": self.settings.protect_threshold,
                "metadata": dict(self.settings.metadata),
                "clusters": sorted(
                    [c, self.cluster_config(c).health_checker.to_json()] for c in self.clusters
                ),
            },
            sort_keys=True,
        )
        parts = sorted(
            f"{i.ip}:{i.port}_{i.weight}_{i.healthy}_{i.enabled}_{i.cluster}_{i.ephemeral}_"
            f"{sorted(i.metadata.items())}{i.native_id}"
            for i in self.instances()
        )
        return hashlib.md5(
            (service_part + ",".join(parts)).encode(), usedforsecurity=False
        ).hexdigest()


class Registry:
    def __init__(self, read: Callable[[DatumKey], object]) -> None:
        self._read = read
        self._views: dict[ServiceName, ServiceView] = {}
        self._by_namespace: dict[str, dict[str, ServiceView]] = {}
        self._revision = 0
        self._lock = (
            threading.Lock()
        )  # only guards the counters and indexes against readers' copies
        self.instance_count = 0
        self.switches = Switches()
        self.registered_namespaces: Mapping[str, Namespace] = MappingProxyType({})
        # Isolated and counted: ``naming_listener_*{source="registry"}`` at ``/metrics``.
        self.listeners: ListenerList[ServiceView] = ListenerList("registry")

    # -- writer side (notifier thread) ------------------------------------------------------

    def on_datum(self, datum: Datum) -> None:
        if datum.key.kind is KeyKind.SWITCHES:
            value = datum.value
            self.switches = value if isinstance(value, Switches) else Switches()
            return
        if datum.key.kind is KeyKind.NAMESPACES:
            value = datum.value
            self.registered_namespaces = (
                value if isinstance(value, Mapping) else MappingProxyType({})
            )
            return
        if datum.key.kind is KeyKind.ACCOUNTS:
            return  # not the registry's: the accounts layer listens for it
        self.rebuild(service_of(datum.key))

    def rebuild(self, name: ServiceName) -> ServiceView | None:
        meta = self._read(DatumKey.meta(name))
        eph = self._read(DatumKey.instances(name, True))
        pers = self._read(DatumKey.instances(name, False))
        assert meta is None or isinstance(meta, ServiceMeta)
        assert eph is None or isinstance(eph, Mapping)
        assert pers is None or isinstance(pers, Mapping)
        with self._lock:
            self._revision += 1
            view = ServiceView(name, meta, eph, pers, self._revision)
            old = self._views.get(name)
            self.instance_count += view.instance_count - (old.instance_count if old else 0)
            namespace = self._by_namespace.setdefault(name.namespace, {})
            if view.exists:
                self._views[name] = view
                namespace[name.grouped] = view
            else:
                self._views.pop(name, None)
                namespace.pop(name.grouped, None)
                if not namespace:
                    self._by_namespace.pop(name.namespace, None)
        self.listeners.call(view, name)  # a push failure must not stop the registry
        return view if view.exists else None

    # -- reader side (any thread) -----------------------------------------------------------

    def get(self, name: ServiceName) -> ServiceView | None:
        return self._views.get(name)

    def views(self) -> list[ServiceView]:
        return list(self._views.values())

    def namespaces(self) -> list[str]:
        return sorted(self._by_namespace)

    def services(self, namespace: str) -> list[ServiceView]:
        """Sorted by grouped name, as Nacos's ConcurrentSkipListMap iterates."""
        found = self._by_namespace.get(namespace)
        if not found:
            return []
        return [found[k] for k in sorted(list(found))]

    @property
    def service_count(self) -> int:
        return len(self._views)


def select_hosts(
    view: ServiceView, cluster_names: tuple[str, ...], healthy_only: bool
) -> list[tuple[Instance, bool]]:
    """Cluster filter, protect threshold, healthy-first order, then drop disabled ones."""
    return select(view, cluster_names, healthy_only).hosts


@dataclass(frozen=True, slots=True)
class Selection:
    """What a consumer is given: (instance, healthy as shown) pairs, and whether the protect
    threshold fired (every selected instance then shows as healthy: Nacos's
    ``reachProtectionThreshold``)."""

    hosts: list[tuple[Instance, bool]]
    protected: bool


def select(view: ServiceView, cluster_names: tuple[str, ...], healthy_only: bool) -> Selection:
    """The one protocol-neutral instance query every edge renders (Consul's health query)."""
    if cluster_names:
        selected = [i for c in cluster_names for i in view.clusters.get(c, ())]
    else:
        selected = [i for members in view.clusters.values() for i in members]
    if not selected:
        return Selection([], False)
    healthy = [i for i in selected if i.healthy]
    unhealthy = [i for i in selected if not i.healthy]
    # Nacos counts disabled instances in the denominator, and 0 <= 0 fires with no healthy one.
    protected = len(healthy) / len(selected) <= view.settings.protect_threshold
    if protected:
        healthy, unhealthy = healthy + unhealthy, []
    chosen = [(i, True) for i in healthy]
    if not healthy_only:
        chosen += [(i, False) for i in unhealthy]
    return Selection([(i, h) for i, h in chosen if i.enabled], protected)
