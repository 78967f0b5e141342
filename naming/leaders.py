"""Service leaders (Flynn discoverd's ``oldest`` election, over our registry).

The leader of a service, or of one cluster of it, is its healthy, enabled instance registered
earliest. No member decides it: every member computes it from the same replicated data.

- **Registration order is the stored order.** An instance set is a dict in insertion order; a
  new instance is appended, a re-register or an update keeps its place, a removal drops it. The
  order is made where the data lives (the Distro owner's apply for ephemeral instances, the Raft
  apply for persistent ones) and travels with the value (the codec encodes a list in order, so a
  Distro sync or snapshot and a Raft replay rebuild the same order). An instance that expires and
  comes back is appended again and loses its seniority, as in Flynn.
- **Two sets, one order.** A service can hold persistent and ephemeral instances; between the
  earliest candidate of each, the one with the smaller ``registered_ms`` (the registering
  member's clock, replicated in the value) leads, the persistent one on a tie.
- **Pins.** An operator may pin a leader (``ServiceMeta.pinned_leaders``, replicated through
  Raft): scope ``""`` for the whole service, or a cluster name. A pin holds while the pinned
  instance is present, healthy and enabled; otherwise the oldest rule applies and the pin waits
  for its instance to come back. A cluster with no pin of its own follows the service's pin when
  the pinned instance is in that cluster.

Pure functions over a :class:`ServiceView`: no clock, no I/O. They read the stored maps, not the
view's rendered lists, so the change feed can ask on every write without building those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from naming.domain import Instance, as_shown
from naming.registry import ServiceView

SERVICE_SCOPE = ""

Leaders = dict[str, Instance | None]  # scope ("" or a cluster name) -> leader


def serving(inst: Instance) -> bool:
    return inst.healthy and inst.enabled


def _firsts(instances: Iterable[Instance], into: dict[str, list[Instance]]) -> None:
    """Append one set's first serving instance per scope to ``into[scope]``. Every cluster
    seen gets an entry, so a cluster with no serving instance reports no leader."""
    taken: set[str] = set()  # scopes that already have this set's candidate
    for inst in instances:
        candidates = into.setdefault(inst.cluster, [])
        if not (inst.healthy and inst.enabled):
            continue
        if SERVICE_SCOPE not in taken:
            into[SERVICE_SCOPE].append(inst)
            taken.add(SERVICE_SCOPE)
        if inst.cluster not in taken:
            candidates.append(inst)
            taken.add(inst.cluster)


def _earlier(found: list[Instance]) -> Instance | None:
    """The earliest of (at most) the persistent candidate then the ephemeral one."""
    if not found:
        return None
    best = found[0]
    for inst in found[1:]:
        if inst.registered_ms < best.registered_ms:
            best = inst
    return best


def pinned(view: ServiceView, scope: str) -> Instance | None:
    """The pinned instance leading ``scope`` now; None when no pin applies there or its
    instance is away, not healthy or not enabled (the oldest rule applies then)."""
    pins = view.settings.pinned_leaders
    scopes = [SERVICE_SCOPE] if scope == SERVICE_SCOPE else [scope, SERVICE_SCOPE]
    for each in scopes:
        address = pins.get(each)
        if address is None:
            continue
        for inst in (*view.persistent_map().values(), *view.ephemeral_map().values()):
            if f"{inst.ip}:{inst.port}" != address or not serving(inst):
                continue
            if scope == SERVICE_SCOPE or inst.cluster == scope:
                return inst
    return None


def leaders(view: ServiceView) -> Leaders:
    """Every scope's leader: ``""`` for the service, then each cluster with an instance."""
    firsts: dict[str, list[Instance]] = {SERVICE_SCOPE: []}
    # Persistent first: on equal registration times the persistent candidate stays first.
    _firsts(view.persistent_map().values(), firsts)
    _firsts(view.ephemeral_map().values(), firsts)
    found: Leaders = {}
    for scope, candidates in firsts.items():
        held = pinned(view, scope) if view.settings.pinned_leaders else None
        chosen = held or _earlier(candidates)
        found[scope] = None if chosen is None else as_shown(chosen)
    return found


def leader(view: ServiceView, cluster: str | None = None) -> Instance | None:
    """The leader of the service (``cluster`` None) or of one of its clusters; None when it has
    no healthy, enabled instance there."""
    return leaders(view).get(SERVICE_SCOPE if cluster is None else cluster)


def scope_of(cluster: str | None) -> str:
    return SERVICE_SCOPE if cluster is None else cluster


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads a scope and why: the pinned instance, or the oldest serving one."""

    instance: Instance
    scope: str
    pinned: bool


def leadership(view: ServiceView, cluster: str | None = None) -> Leadership | None:
    scope = scope_of(cluster)
    found = leaders(view).get(scope)
    if found is None:
        return None
    held = pinned(view, scope) if view.settings.pinned_leaders else None
    return Leadership(found, scope, held is not None)
