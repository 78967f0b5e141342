"""Domain values → the Nacos 2.x JSON bodies (``serviceInfo`` and its hosts).

A subscriber's ``serviceInfo`` for one (view, clusters, healthyOnly) is built once per service
revision and cached on the view (the cache dies with it), its host list already encoded
(``wire.RawJson``); a push or an answer encodes only the few per-message fields around it.
"""

from __future__ import annotations

from typing import Any

from facades.nacos_v2 import wire
from naming.domain import Instance, ServiceName
from naming.registry import ServiceView, select

_CACHE = "nacos_v2"


def host_json(inst: Instance, healthy: bool, grouped: str) -> dict[str, Any]:
    """One host as the 2.x clients read it (``com.alibaba.nacos.api.naming.pojo.Instance``)."""
    return {
        "instanceId": inst.instance_id,
        "ip": inst.ip,
        "port": inst.port,
        "weight": inst.weight,
        "healthy": healthy,
        "enabled": inst.enabled,
        "ephemeral": inst.ephemeral,
        "clusterName": inst.cluster,
        "serviceName": grouped,
        "metadata": dict(inst.metadata),
        "instanceHeartBeatInterval": inst.heartbeat_interval_ms,
        "instanceHeartBeatTimeOut": inst.heartbeat_timeout_ms,
        "ipDeleteTimeout": inst.ip_delete_timeout_ms,
        "instanceIdGenerator": inst.id_generator,
    }


def service_info(
    name: ServiceName,
    view: ServiceView | None,
    clusters: str,
    healthy_only: bool,
    cache_millis: int,
    now_ms: int,
) -> dict[str, Any]:
    """``ServiceInfo``: ``name`` without its group (the SDKs key their cache by
    ``group@@name``), the protect threshold applied, disabled instances left out."""
    hosts: wire.RawJson | list[Any] = []
    protected = False
    checksum = ""
    if view is not None:
        key = (_CACHE, clusters, healthy_only)
        cached = view.response_cache.get(key)
        if cached is None:
            names = tuple(c for c in (x.strip() for x in clusters.split(",")) if c)
            chosen = select(view, names, healthy_only)
            cached = (
                wire.RawJson.of([host_json(i, h, name.grouped) for i, h in chosen.hosts]),
                chosen.protected,
            )
            view.response_cache[key] = cached
        hosts, protected = cached
        checksum = view.checksum
    return {
        "name": name.name,
        "groupName": name.group,
        "clusters": clusters,
        "cacheMillis": cache_millis,
        "hosts": hosts,
        "lastRefTime": now_ms,
        "checksum": checksum,
        "allIPs": False,
        "reachProtectionThreshold": protected,
    }
