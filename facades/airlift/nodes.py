"""A node's announcement applied to the registry: every PUT replaces the node's whole service
list (airlift keeps one store entry per node id), so it renews what is unchanged, registers what
is new or changed and removes what is no longer listed; a DELETE removes everything.

There is no index of its own to keep in step: a node's instances are found in the registry by
their ``airlift.nodeId`` metadata, through a per-view table cached on the view (rebuilt once per
service revision), so a restart, another member or a Distro sync all see the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from facades.airlift.announcements import (
    NAMESPACE,
    NODE_ID,
    DynamicAnnouncement,
    instance_of,
    is_airlift,
    service_name,
)
from facades.airlift.context import AirliftStats, Node
from naming.commands import InstanceRef, RegisterInstance
from naming.domain import Instance, InstanceKey, ServiceName
from naming.registry import Registry, ServiceView

_NODES = "airlift.nodes"
_EMPTY: Mapping[str, tuple[Instance, ...]] = MappingProxyType({})


def _by_node(view: ServiceView) -> Mapping[str, tuple[Instance, ...]]:
    cached = view.response_cache.get(_NODES)
    if cached is None:
        found: dict[str, list[Instance]] = {}
        for inst in view.ephemeral_map().values():
            if is_airlift(inst) and NODE_ID in inst.metadata:
                found.setdefault(inst.metadata[NODE_ID], []).append(inst)
        cached = {k: tuple(v) for k, v in found.items()} if found else _EMPTY
        view.response_cache[_NODES] = cached
    return cached


Known = dict[ServiceName, dict[InstanceKey, Instance]]


def node_instances(registry: Registry, node_id: str) -> Known:
    """The node's dynamic instances, by service and key."""
    found: Known = {}
    for view in registry.services(NAMESPACE):
        mine = _by_node(view).get(node_id)
        if mine:
            found[view.name] = {i.key: i for i in mine}
    return found


@dataclass
class Outcome:
    registered: int = 0
    renewed: int = 0
    removed: int = 0
    services: set[ServiceName] = field(default_factory=set)


def announce(
    node: Node,
    node_id: str,
    announcement: DynamicAnnouncement,
    client: str,
    max_age_s: int,
    stats: AirliftStats,
) -> Outcome:
    """Apply a checked announcement: everything was validated before the first write."""
    operations = node.operations
    before = node_instances(node.registry, node_id)
    wanted: Known = {}
    for service in announcement.services:
        inst = instance_of(
            service.id,
            announcement.pool,
            announcement.location,
            service.properties,
            client,
            node_id=node_id,
            max_age_s=max_age_s,
        )
        wanted.setdefault(service_name(service.type, announcement.pool), {})[inst.key] = inst
    outcome = Outcome()
    for name, instances in wanted.items():
        known = before.get(name, {})
        for key, inst in instances.items():
            old = known.get(key)
            # Unchanged: a renewal is the core's beat (no write unless it was unhealthy). Not
            # found: it expired since we looked, and is registered again below.
            unchanged = old is not None and old.metadata == inst.metadata
            if unchanged and operations.renew(name, key).found:
                outcome.renewed += 1
                stats.renewed += 1
                continue
            if old is not None:  # an operator's weight or enabled flag survives a change
                inst = inst.with_changes(weight=old.weight, enabled=old.enabled)
            operations.register_instance(RegisterInstance(name, inst))
            outcome.registered += 1
            stats.registered += 1
    for name, known in before.items():
        keep = wanted.get(name, {})
        for key in known:
            if key not in keep:
                operations.deregister_instance(InstanceRef(name, key, True))
                outcome.removed += 1
                stats.removed += 1
    outcome.services = set(wanted) | set(before)
    return outcome


def withdraw(node: Node, node_id: str, kind: str | None, stats: AirliftStats) -> int:
    """Remove the node's instances (of one type, when ``kind`` is given); how many."""
    removed = 0
    for name, known in node_instances(node.registry, node_id).items():
        if kind is not None and name.name != kind:
            continue
        for key in known:
            node.operations.deregister_instance(InstanceRef(name, key, True))
            removed += 1
    stats.removed += removed
    return removed
