"""One function per Nacos 2.x naming request: parse the JSON body, call the core, answer.

A handler runs on the gRPC edge's event loop first. If the core has to wait (a write for a
service another member owns, a Raft commit) it raises ``lib.blocking.MustOffload`` before
changing anything, and the server runs the same handler again on a worker thread. So a handler
never touches loop-owned state directly: what it wants done to its connection or to the
subscriptions it asks for with :meth:`Call.later`, run on the loop once it returned.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from accounts.auth import Action, Identity, Resource
from facades.nacos_v2.connections import Connection
from facades.nacos_v2.render import service_info
from lib.errors import InvalidParam, MissingParam
from naming.commands import InstanceRef, RegisterInstance
from naming.domain import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    Instance,
    InstanceKey,
    ServiceName,
    check_cluster_name,
    check_ip,
    check_port,
    check_weight,
    fold_service_name,
    namespace_or_default,
    parse_metadata,
    shared_port,
    shared_weight,
)
from naming.operations import NamingOperations
from naming.registry import Registry

Body = dict[str, Any]


class Subscriptions(Protocol):
    """The push side (``push.PushHub``), as a handler's deferred effects use it."""

    def subscribe(self, conn: Connection, service: ServiceName, clusters: str) -> None: ...

    def unsubscribe(self, conn: Connection, service: ServiceName) -> None: ...


@dataclass
class Call:
    operations: NamingOperations
    registry: Registry
    subscriptions: Subscriptions
    conn: Connection
    body: Body
    identity: Identity | None
    now_ms: int
    effects: list[Callable[[], None]] = field(default_factory=list)

    def later(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` on the loop after the handler returned successfully."""
        self.effects.append(effect)


Handler = Callable[[Call], Body]


@dataclass(frozen=True, slots=True)
class Route:
    response: str  # the response type the SDK expects, errors included
    action: Action | None  # None: no authorization (the connection's own housekeeping)
    handler: Handler
    service_scoped: bool = True  # the resource names the service (else the namespace)


# -- parsing ----------------------------------------------------------------------------------


def _text(body: Body, name: str, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidParam(f"{name} must be a string")
    return value


def _int(body: Body, name: str, default: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParam(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 parses as inf
        raise InvalidParam(f"{name} must be an integer, got {str(value)[:40]}") from None


def _bool(body: Body, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParam(f"{name} must be true or false")
    return value


def service_of(body: Body) -> ServiceName:
    raw = _text(body, "serviceName").strip()
    if not raw:
        raise MissingParam("serviceName")
    group = _text(body, "groupName").strip() or DEFAULT_GROUP
    return ServiceName(
        namespace_or_default(_text(body, "namespace")), fold_service_name(raw, group)
    )


def resource_of(body: Body, service_scoped: bool) -> Resource:
    namespace = namespace_or_default(_text(body, "namespace"))
    if not service_scoped:
        return Resource.naming(namespace, _text(body, "groupName") or "*")
    service = service_of(body)
    return Resource.naming(namespace, service.group, service.name)


def instance_of(raw: Any, *, ephemeral: bool, lease: str = "") -> Instance:
    if not isinstance(raw, dict):
        raise MissingParam("instance")
    ip = raw.get("ip")
    if not isinstance(ip, str) or not ip:
        raise MissingParam("ip")
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int):
        raise InvalidParam("instance port must be an integer")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InvalidParam("instance weight must be a number")
    cluster = raw.get("clusterName") or DEFAULT_CLUSTER
    if not isinstance(cluster, str):
        raise InvalidParam("clusterName must be a string")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidParam("instance metadata must be a JSON object")
    flags = {name: _bool(raw, name, True) for name in ("healthy", "enabled")}
    return Instance(
        ip=check_ip(ip),
        port=shared_port(check_port(port)),
        cluster=sys.intern(check_cluster_name(cluster)),
        weight=shared_weight(check_weight(float(weight))),
        healthy=flags["healthy"],
        enabled=flags["enabled"],
        ephemeral=ephemeral,
        metadata=parse_metadata(json.dumps(metadata)) if metadata else parse_metadata(None),
        lease=lease,
    )


# -- handlers ---------------------------------------------------------------------------------


def health_check(call: Call) -> Body:
    return {}


def _register_leased(call: Call, service: ServiceName, inst: Instance) -> None:
    call.operations.register_instance(RegisterInstance(service, inst))
    conn, key = call.conn, inst.key
    call.later(lambda: conn.instances.setdefault(service, set()).add(key))


def _deregister(call: Call, service: ServiceName, key: InstanceKey, ephemeral: bool) -> None:
    call.operations.deregister_instance(InstanceRef(service, key, ephemeral))
    if ephemeral:
        conn = call.conn

        def forget() -> None:
            keys = conn.instances.get(service)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del conn.instances[service]

        call.later(forget)


def instance(call: Call) -> Body:
    """``InstanceRequest``: ephemeral instances only, each bound to this connection."""
    service = service_of(call.body)
    kind = _text(call.body, "type")
    raw = call.body.get("instance")
    if kind == "registerInstance":
        inst = instance_of(raw, ephemeral=True, lease=call.conn.lease)
        if isinstance(raw, dict) and raw.get("ephemeral") is False:
            raise InvalidParam("InstanceRequest registers ephemeral instances only")
        _register_leased(call, service, inst)
    elif kind == "deregisterInstance":
        inst = instance_of(raw, ephemeral=True)
        _deregister(call, service, inst.key, True)
    else:
        raise InvalidParam(f"unsupported instance request type: {kind[:40]}")
    return {"type": kind}


def persistent_instance(call: Call) -> Body:
    """``PersistentInstanceRequest``: through Raft, answered as ``InstanceResponse``."""
    service = service_of(call.body)
    kind = _text(call.body, "type")
    inst = instance_of(call.body.get("instance"), ephemeral=False)
    if kind == "registerInstance":
        call.operations.register_instance(RegisterInstance(service, inst))
    elif kind == "deregisterInstance":
        _deregister(call, service, inst.key, False)
    else:
        raise InvalidParam(f"unsupported instance request type: {kind[:40]}")
    return {"type": kind}


def batch_instance(call: Call) -> Body:
    """``BatchInstanceRequest``: the connection's instances of the service become the batch
    (Nacos ``batchRegisterInstance``); the 3.x SDK also sends ``batchDeregisterInstance``."""
    service = service_of(call.body)
    kind = _text(call.body, "type")
    raw = call.body.get("instances")
    if not isinstance(raw, list):
        raise MissingParam("instances")
    if kind == "batchRegisterInstance":
        batch = [instance_of(item, ephemeral=True, lease=call.conn.lease) for item in raw]
        wanted = {inst.key for inst in batch}
        for inst in batch:
            call.operations.register_instance(RegisterInstance(service, inst))
        stale = call.conn.instances.get(service, set()) - wanted
        if stale:
            call.operations.release_leased(service, [(key, call.conn.lease) for key in stale])
        conn = call.conn

        def keep() -> None:
            conn.instances[service] = set(wanted)

        call.later(keep)
    elif kind == "batchDeregisterInstance":
        for item in raw:
            _deregister(call, service, instance_of(item, ephemeral=True).key, True)
    else:
        raise InvalidParam(f"unsupported batch request type: {kind[:40]}")
    return {"type": kind}


def _cache_millis(call: Call) -> int:
    return int(call.operations.switches.defaultCacheMillis)


def subscribe(call: Call) -> Body:
    """``SubscribeServiceRequest``: the current ``serviceInfo`` (every enabled instance, the
    protect threshold applied), and pushes from now on. ``subscribe=false`` unsubscribes."""
    service = service_of(call.body)
    clusters = _text(call.body, "clusters")
    conn, hub = call.conn, call.subscriptions
    if _bool(call.body, "subscribe", True):
        # Subscribed before the view is read: a change landing in between is pushed again,
        # never lost (the push reads the view it sends when it sends). The one handler that
        # changes loop-owned state itself: nothing here waits, so it never leaves the loop.
        hub.subscribe(conn, service, clusters)
    else:
        hub.unsubscribe(conn, service)
    view = call.registry.get(service)
    info = service_info(service, view, clusters, False, _cache_millis(call), call.now_ms)
    return {"serviceInfo": info}


def query_service(call: Call) -> Body:
    """``ServiceQueryRequest`` (3.x SDK's optional updater): one read, no subscription."""
    service = service_of(call.body)
    clusters = _text(call.body, "cluster")
    healthy_only = _bool(call.body, "healthyOnly", False)
    view = call.registry.get(service)
    info = service_info(service, view, clusters, healthy_only, _cache_millis(call), call.now_ms)
    return {"serviceInfo": info}


def service_list(call: Call) -> Body:
    """``ServiceListRequest``: names without their group, one page of them, and the total."""
    body = call.body
    namespace = namespace_or_default(_text(body, "namespace"))
    group = _text(body, "groupName").strip() or DEFAULT_GROUP
    page_no = _int(body, "pageNo", 1)
    page_size = _int(body, "pageSize", 10)
    if page_no < 1 or not 1 <= page_size <= 10_000:
        raise InvalidParam("pageNo must be >= 1 and pageSize between 1 and 10000")
    selector = body.get("selector")
    if isinstance(selector, dict):
        selector = json.dumps(selector)
    elif selector is not None and not isinstance(selector, str):
        raise InvalidParam("selector must be an object or a string")
    views = call.operations.list_services(namespace, group, selector or None)
    names = [view.name.name for view in views]
    start = (page_no - 1) * page_size
    return {"count": len(names), "serviceNames": names[start : start + page_size]}


ROUTES: dict[str, Route] = {
    "HealthCheckRequest": Route("HealthCheckResponse", None, health_check),
    "InstanceRequest": Route("InstanceResponse", Action.WRITE, instance),
    "PersistentInstanceRequest": Route("InstanceResponse", Action.WRITE, persistent_instance),
    "BatchInstanceRequest": Route("BatchInstanceResponse", Action.WRITE, batch_instance),
    "SubscribeServiceRequest": Route("SubscribeServiceResponse", Action.READ, subscribe),
    "ServiceQueryRequest": Route("QueryServiceResponse", Action.READ, query_service),
    "ServiceListRequest": Route("ServiceListResponse", Action.READ, service_list, False),
}
