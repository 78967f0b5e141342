"""Instances of our model → airlift's ``Service`` JSON (``[AD]Service.java``), and the lookup
answers (``Services``: the server's environment and the list).

Instances that came from airlift render back exactly what was announced. Any other instance
(a Nacos or Eureka client's) renders with id = a UUIDv5 of its instance id (the airlift client
reads ids as ``java.util.UUID``), ``nodeId`` null, location ``/nacos/<cluster>``, and its
metadata as properties plus ``http = http://ip:port``. Unhealthy or disabled instances are left
out: airlift has no health field, and its own server drops what expired.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

from facades.airlift.announcements import (
    ID,
    LOCATION,
    NAMESPACE,
    NODE_ID,
    is_airlift,
    properties_of,
)
from naming.domain import Instance, ServiceName
from naming.registry import Registry, ServiceView

# The UUIDv5 namespace of the ids we make up for instances that have no airlift id.
FOREIGN_IDS = uuid.UUID("5c1c2f7e-2b4e-5a43-9b0a-6e61636f7331")

_CACHE = "airlift.services"


def foreign_id(inst: Instance) -> str:
    return str(uuid.uuid5(FOREIGN_IDS, inst.instance_id))


def service_json(name: ServiceName, inst: Instance) -> dict[str, Any]:
    kind, pool = name.name, name.group
    if is_airlift(inst):
        return {
            "id": inst.metadata.get(ID, inst.native_id),
            "nodeId": inst.metadata.get(NODE_ID),
            "type": kind,
            "pool": pool,
            "location": inst.metadata.get(LOCATION, ""),
            "properties": properties_of(inst),
        }
    properties = dict(inst.metadata)
    properties["http"] = f"http://{_host(inst.ip)}:{inst.port}"
    return {
        "id": foreign_id(inst),
        "nodeId": None,
        "type": kind,
        "pool": pool,
        "location": f"/nacos/{inst.cluster}",
        "properties": properties,
    }


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip


def view_services(view: ServiceView) -> list[dict[str, Any]]:
    """The view's visible instances as airlift services: rendered once per view (= per
    service revision), as the other edges cache theirs."""
    cached = view.response_cache.get(_CACHE)
    if cached is None:
        cached = [service_json(view.name, i) for i in view.instances() if i.healthy and i.enabled]
        view.response_cache[_CACHE] = cached
    return list(cached)


def lookup(registry: Registry, kind: str | None, pool: str | None) -> list[dict[str, Any]]:
    """``GET /v1/service[/{type}[/{pool}]]``: every pool is a group of the namespace."""
    found: list[dict[str, Any]] = []
    for view in registry.services(NAMESPACE):
        if kind is not None and view.name.name != kind:
            continue
        if pool is not None and view.name.group != pool:
            continue
        found += view_services(view)
    return found


def statics(registry: Registry) -> list[dict[str, Any]]:
    """``GET /v1/announcement/static``: the persistent instances that came from airlift."""
    return [
        service_json(view.name, inst)
        for view in registry.services(NAMESPACE)
        for inst in view.persistent
        if is_airlift(inst)
    ]


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def services_body(environment: str, services: Iterable[dict[str, Any]]) -> bytes:
    return json_bytes({"environment": environment, "services": list(services)})


def etag(body: bytes) -> str:
    """A strong validator of the exact answer: equal bodies, equal tags, on every member."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
