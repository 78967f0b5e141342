"""The value codec of the core: domain values ⇄ JSON, one codec per key kind.

The storage layers hold values opaquely; the composition root hands them :data:`DATUM_CODEC`
(``consistency.datum.DatumCodec`` over the codecs below) and :func:`naming.changes.Change.decode`,
so ``consistency``, ``distro`` and ``raft`` never import the domain. This module is the one place
that turns domain values into bytes: the Raft snapshot, Distro sync payloads and checksums.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from consistency.datum import Datum, DatumCodec, DatumKey, DocumentCodec, KeyKind, ValueCodec
from naming.domain import (
    EMPTY_METADATA,
    ClusterConfig,
    HealthChecker,
    Instance,
    InstanceKey,
    Namespace,
    Selector,
    ServiceMeta,
    ServiceName,
    Switches,
    freeze_metadata,
    shared_metadata,
    shared_port,
    shared_weight,
)

InstanceSet = Mapping[InstanceKey, Instance]
Namespaces = Mapping[str, Namespace]  # by id
Value = InstanceSet | ServiceMeta | Switches | Namespaces

EMPTY_INSTANCES: InstanceSet = MappingProxyType({})


def service_of(key: DatumKey) -> ServiceName:
    """The service a key belongs to (empty for the switches key)."""
    return ServiceName(key.namespace, key.service)


def encode_instance(inst: Instance) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ip": inst.ip,
        "port": inst.port,
        "clusterName": inst.cluster,
        "weight": inst.weight,
        "healthy": inst.healthy,
        "enabled": inst.enabled,
        "ephemeral": inst.ephemeral,
        "metadata": dict(inst.metadata),
        "instanceId": inst.instance_id,
        "app": inst.app,
        "marked": inst.marked,
        "registeredMs": inst.registered_ms,
    }
    if inst.lease:
        # Only when set: beat-based instances (most) encode as before, and data written before
        # leases existed decodes as beat-based.
        out["lease"] = inst.lease
    if inst.native_id:  # likewise: only foreign protocols' instances carry one
        out["nativeId"] = inst.native_id
    return out


def decode_instance(data: Mapping[str, Any]) -> Instance:
    # Most instances have none: skip building and freezing an empty dict (the snapshot decodes
    # 100,000 of these on a member's start).
    raw_metadata = data.get("metadata")
    return Instance(
        ip=str(data["ip"]),
        # Shared copies of what most instances repeat (~140 bytes per decoded instance).
        port=shared_port(int(data["port"])),
        cluster=sys.intern(str(data["clusterName"])),
        weight=shared_weight(float(data["weight"])),
        healthy=bool(data["healthy"]),
        enabled=bool(data["enabled"]),
        ephemeral=bool(data["ephemeral"]),
        metadata=shared_metadata({str(k): str(v) for k, v in raw_metadata.items()})
        if raw_metadata
        else EMPTY_METADATA,
        instance_id=str(data.get("instanceId", "")),
        app=sys.intern(str(data.get("app", "DEFAULT"))),
        marked=bool(data.get("marked", False)),
        registered_ms=int(data.get("registeredMs", 0)),
        lease=str(data.get("lease") or ""),
        native_id=str(data.get("nativeId") or ""),
    )


def instance_set(instances: list[Instance] | tuple[Instance, ...]) -> InstanceSet:
    return MappingProxyType({inst.key: inst for inst in instances})


def _encode_cluster(cfg: ClusterConfig) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "healthChecker": cfg.health_checker.to_json(),
        "checkPort": cfg.check_port,
        "useInstancePort": cfg.use_instance_port,
        "metadata": dict(cfg.metadata),
    }


def _decode_cluster(data: Mapping[str, Any]) -> ClusterConfig:
    return ClusterConfig(
        name=str(data["name"]),
        health_checker=HealthChecker.from_json(data["healthChecker"]),
        check_port=int(data["checkPort"]),
        use_instance_port=bool(data["useInstancePort"]),
        metadata=freeze_metadata(dict(data.get("metadata", {}))),
    )


class InstancesCodec:
    """Instance lists (ephemeral and persistent): a JSON array of instance objects."""

    def encode(self, value: InstanceSet) -> list[dict[str, Any]]:
        return [encode_instance(i) for i in value.values()]

    def decode(self, data: Any) -> InstanceSet:
        return instance_set([decode_instance(d) for d in data])

    def canonical(self, value: InstanceSet) -> list[dict[str, Any]]:
        """Independent of instance order (the Distro verify round compares checksums)."""
        return sorted(self.encode(value), key=lambda i: (i["ip"], i["port"], i["clusterName"]))


class ServiceMetaCodec:
    def encode(self, value: ServiceMeta) -> dict[str, Any]:
        data = {
            "protectThreshold": value.protect_threshold,
            "metadata": dict(value.metadata),
            "selector": value.selector.to_json(),
            "clusters": [_encode_cluster(c) for c in value.clusters.values()],
        }
        if value.pinned_leaders:  # absent otherwise: stored metas keep their old shape
            data["pinnedLeaders"] = dict(sorted(value.pinned_leaders.items()))
        return data

    def decode(self, data: Any) -> ServiceMeta:
        selector = data.get("selector") or {}
        clusters = [_decode_cluster(c) for c in data.get("clusters", [])]
        return ServiceMeta(
            protect_threshold=float(data.get("protectThreshold", 0.0)),
            metadata=freeze_metadata(dict(data.get("metadata", {}))),
            selector=Selector(
                type=str(selector.get("type", "none")),
                expression=str(selector.get("expression", "")),
            ),
            clusters=MappingProxyType({c.name: c for c in clusters}),
            pinned_leaders=MappingProxyType(
                {str(k): str(v) for k, v in (data.get("pinnedLeaders") or {}).items()}
            ),
        )

    def canonical(self, value: ServiceMeta) -> dict[str, Any]:
        return self.encode(value)


class SwitchesCodec:
    def encode(self, value: Switches) -> dict[str, Any]:
        return value.to_json()

    def decode(self, data: Any) -> Switches:
        return Switches.from_json(data)

    def canonical(self, value: Switches) -> dict[str, Any]:
        return self.encode(value)


class NamespacesCodec:
    def encode(self, value: Namespaces) -> dict[str, Any]:
        return {ns.id: {"name": ns.name, "description": ns.description} for ns in value.values()}

    def decode(self, data: Any) -> Namespaces:
        return MappingProxyType(
            {
                str(id_): Namespace(str(id_), str(v["name"]), str(v.get("description", "")))
                for id_, v in data.items()
            }
        )

    def canonical(self, value: Namespaces) -> dict[str, Any]:
        return self.encode(value)


VALUE_CODECS: Mapping[KeyKind, ValueCodec] = MappingProxyType(
    {
        KeyKind.EPHEMERAL_INSTANCES: InstancesCodec(),
        KeyKind.PERSISTENT_INSTANCES: InstancesCodec(),
        KeyKind.SERVICE_META: ServiceMetaCodec(),
        KeyKind.SWITCHES: SwitchesCodec(),
        KeyKind.NAMESPACES: NamespacesCodec(),
        # The accounts layer's document (``accounts.directory``): the core stores it opaquely.
        KeyKind.ACCOUNTS: DocumentCodec(),
    }
)
DATUM_CODEC = DatumCodec(VALUE_CODECS)


def encode_value(kind: KeyKind, value: Value | None) -> Any:
    return DATUM_CODEC.encode_value(kind, value)


def decode_value(kind: KeyKind, data: Any) -> Value | None:
    return cast(Value | None, DATUM_CODEC.decode_value(kind, data))


def encode_datum(datum: Datum) -> dict[str, Any]:
    return DATUM_CODEC.encode_datum(datum)


def decode_datum(data: Mapping[str, Any]) -> Datum:
    return DATUM_CODEC.decode_datum(data)
