"""Response shapes, byte for byte where clients care (``nacos-v1-api.md`` §B.2).

``instance/list`` is the hottest read: the host array for one (clusters, healthyOnly, name
format) query is rendered once per service revision and cached on the immutable view; a request
then only formats the few per-request fields around it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from facades.nacos_v1.params import strip_group
from naming.domain import Instance
from naming.leaders import Leadership
from naming.registry import ServiceView, select_hosts

# The rendered pieces are cached per service revision in the view's ``response_cache`` (a slot
# the core leaves to the edges: it dies with the view, so no eviction, no lock). Keys carry
# this edge's name so another edge's cache never collides with ours.
_CACHE = "nacos_v1"
_TAIL = (_CACHE, "tail")
_META = (_CACHE, "meta")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def host_json(inst: Instance, healthy: bool, service_field: str) -> dict[str, Any]:
    """One host of ``instance/list``, keys in Nacos's order (PY hashes ``str(dict)``)."""
    return {
        "ip": inst.ip,
        "port": inst.port,
        "valid": healthy,
        "healthy": healthy,
        "marked": inst.marked,
        "instanceId": inst.instance_id,
        "metadata": dict(inst.metadata),
        "enabled": inst.enabled,
        "weight": inst.weight,
        "clusterName": inst.cluster,
        "serviceName": service_field,
        "ephemeral": inst.ephemeral,
    }


def render_hosts(
    view: ServiceView, cluster_names: tuple[str, ...], healthy_only: bool, grouped: bool
) -> str:
    cache_key = (_CACHE, "hosts", cluster_names, healthy_only, grouped)
    cached = view.response_cache.get(cache_key)
    if cached is not None:
        return str(cached)
    service_field = view.name.grouped if grouped else strip_group(view.name.grouped)
    rendered = _dumps(
        [host_json(i, h, service_field) for i, h in select_hosts(view, cluster_names, healthy_only)]
    )
    view.response_cache[cache_key] = rendered
    return rendered


def render_instance_list(
    view: ServiceView | None,
    grouped_name: str,
    clusters: str,
    cluster_names: tuple[str, ...],
    healthy_only: bool,
    grouped: bool,
    env: str,
    cache_millis: int,
    now_ms: int,
) -> str:
    if view is None:
        return _dumps(
            {"name": grouped_name, "clusters": clusters, "cacheMillis": cache_millis, "hosts": []}
        )
    hosts = render_hosts(view, cluster_names, healthy_only, grouped)
    dom = grouped_name if grouped else strip_group(grouped_name)
    tail = view.response_cache.get(_TAIL)
    if tail is None:
        tail = f',"checksum":{_dumps(view.checksum)},"useSpecifiedURL":false'
        view.response_cache[_TAIL] = tail
    meta = view.response_cache.get(_META)
    if meta is None:
        meta = _dumps(dict(view.settings.metadata))
        view.response_cache[_META] = meta
    return (
        f'{{"hosts":{hosts},"dom":{_dumps(dom)},"name":{_dumps(grouped_name)},'
        f'"cacheMillis":{cache_millis},"lastRefTime":{now_ms}{tail},'
        f'"clusters":{_dumps(clusters)},"env":{_dumps(env)},"metadata":{meta}}}'
    )


def _instance_fields(inst: Instance, grouped_service: str) -> dict[str, Any]:
    return {
        "instanceId": inst.instance_id,
        "ip": inst.ip,
        "port": inst.port,
        "weight": inst.weight,
        "healthy": inst.healthy,
        "enabled": inst.enabled,
        "ephemeral": inst.ephemeral,
        "clusterName": inst.cluster,
        "serviceName": grouped_service,
        "metadata": dict(inst.metadata),
    }


def full_instance_json(inst: Instance, grouped_service: str) -> dict[str, Any]:
    """The whole Instance object (catalog, Distro payloads): includes the derived fields."""
    out: dict[str, Any] = {
        **_instance_fields(inst, grouped_service),
        "instanceHeartBeatInterval": inst.heartbeat_interval_ms,
        "instanceHeartBeatTimeOut": inst.heartbeat_timeout_ms,
        "ipDeleteTimeout": inst.ip_delete_timeout_ms,
        "marked": inst.marked,
        "app": inst.app,
    }
    if not inst.metadata or "preserved.instance.id.generator" in inst.metadata:
        out["instanceIdGenerator"] = inst.id_generator
    return out


def cluster_json(view: ServiceView, name: str) -> dict[str, Any]:
    cfg = view.cluster_config(name)
    return {
        "name": name,
        "healthChecker": cfg.health_checker.to_json(),
        "defaultPort": 80,
        "defaultCheckPort": cfg.check_port,
        "useIPPort4Check": cfg.use_instance_port,
        "metadata": dict(cfg.metadata),
        "serviceName": view.name.grouped,
        "sitegroup": "",
        "defCkport": cfg.check_port,
        "defIPPort": cfg.check_port,
    }


def dumps(obj: Any) -> str:
    return _dumps(obj)


def instance_json(inst: Instance, grouped_service: str) -> dict[str, Any]:
    """``GET /instance``."""
    return {
        "service": grouped_service,
        "ip": inst.ip,
        "port": inst.port,
        "clusterName": inst.cluster,
        "weight": inst.weight,
        "healthy": inst.healthy,
        "instanceId": inst.instance_id,
        "metadata": dict(inst.metadata),
    }


def leader_json(found: Leadership, grouped_service: str) -> dict[str, Any]:
    """``GET /service/leader``: the instance as a host of ``instance/list`` shows it, with
    whether a pin put it there and which scope ("" the service, else a cluster) it leads."""
    return {
        **_instance_fields(found.instance, grouped_service),
        "pinned": found.pinned,
        "scope": found.scope,
    }


def service_json(view: ServiceView) -> dict[str, Any]:
    """``GET /service``."""
    service = view.name
    meta = view.settings
    return {
        "name": service.name,
        "namespaceId": service.namespace,
        "protectThreshold": meta.protect_threshold,
        "metadata": dict(meta.metadata),
        "selector": meta.selector.to_json(),
        "groupName": service.group,
        "clusters": [
            {
                "name": name,
                "healthChecker": view.cluster_config(name).health_checker.to_json(),
                "metadata": dict(view.cluster_config(name).metadata),
            }
            for name in view.clusters
        ],
    }


def catalog_service_json(view: ServiceView) -> dict[str, Any]:
    """``GET /catalog/service``."""
    service = view.name
    meta = view.settings
    return {
        "service": {
            "name": service.name,
            "protectThreshold": meta.protect_threshold,
            "groupName": service.group,
            "selector": meta.selector.to_json(),
            "metadata": dict(meta.metadata),
        },
        "clusters": [cluster_json(view, name) for name in view.clusters],
    }


def catalog_service_with_instances(v: ServiceView) -> dict[str, Any]:
    """One service of ``GET /catalog/services?withInstances=true``."""
    return {
        "serviceName": v.name.name,
        "groupName": v.name.group,
        "metadata": dict(v.settings.metadata),
        "clusterMap": {
            c: {
                "hosts": [
                    {
                        "ip": i.ip,
                        "port": i.port,
                        "metadata": dict(i.metadata),
                        "valid": i.healthy,
                        "weight": i.weight,
                        "enabled": i.enabled,
                    }
                    for i in members
                ]
            }
            for c, members in v.clusters.items()
        },
    }


def catalog_row(v: ServiceView) -> dict[str, Any]:
    """One row of ``GET /catalog/services`` (the console's service list)."""
    total = v.instance_count
    healthy = v.healthy_count()
    trigger = total > 0 and healthy / total <= v.settings.protect_threshold
    return {
        "name": v.name.name,
        "groupName": v.name.group,
        "clusterCount": len(v.clusters),
        "ipCount": total,
        "healthyInstanceCount": healthy,
        "triggerFlag": str(trigger).lower(),
    }


def render_push(
    view: ServiceView, clusters: str, names: tuple[str, ...], grouped: bool, cache_ms: int
) -> str:
    """What instance/list would answer this subscriber (pushes carry it as a string)."""
    return render_instance_list(
        view,
        view.name.grouped,
        clusters,
        names,
        False,
        grouped,
        "",
        cache_ms,
        int(time.time() * 1000),
    )
