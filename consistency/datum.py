"""Typed keys and datums, and the only codec between them and JSON.

A :class:`DatumKey` is a value, never a string parsed with ``startswith``: its ``kind`` decides
the consistency mode (ephemeral → Distro, everything else → Raft). The JSON codec here is the one
place that turns domain values into bytes, for the Raft journal and (later) peer transport.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from naming.domain import (
    ClusterConfig,
    HealthChecker,
    Instance,
    InstanceKey,
    Selector,
    ServiceMeta,
    ServiceName,
    Switches,
    freeze_metadata,
)

InstanceSet = Mapping[InstanceKey, Instance]
Value = InstanceSet | ServiceMeta | Switches

EMPTY_INSTANCES: InstanceSet = MappingProxyType({})


class KeyKind(StrEnum):
    EPHEMERAL_INSTANCES = "iplist.ephemeral"
    PERSISTENT_INSTANCES = "iplist"
    SERVICE_META = "meta"
    SWITCHES = "switches"


@dataclass(frozen=True, slots=True)
class DatumKey:
    kind: KeyKind
    namespace: str = ""
    service: str = ""  # grouped name; empty for SWITCHES

    @property
    def ephemeral(self) -> bool:
        return self.kind is KeyKind.EPHEMERAL_INSTANCES

    @property
    def service_name(self) -> ServiceName:
        return ServiceName(self.namespace, self.service)

    @classmethod
    def instances(cls, service: ServiceName, ephemeral: bool) -> DatumKey:
        kind = KeyKind.EPHEMERAL_INSTANCES if ephemeral else KeyKind.PERSISTENT_INSTANCES
        return cls(kind, service.namespace, service.grouped)

    @classmethod
    def meta(cls, service: ServiceName) -> DatumKey:
        return cls(KeyKind.SERVICE_META, service.namespace, service.grouped)

    @classmethod
    def switches(cls) -> DatumKey:
        return cls(KeyKind.SWITCHES)

    def encode(self) -> str:
        """``kind##namespace##service``; ``##`` cannot occur in a valid name."""
        return f"{self.kind.value}##{self.namespace}##{self.service}"

    @classmethod
    def decode(cls, raw: str) -> DatumKey:
        kind, namespace, service = raw.split("##", 2)
        return cls(KeyKind(kind), namespace, service)


@dataclass(frozen=True, slots=True)
class Datum:
    """One versioned value. ``value is None`` is a tombstone (the key was removed)."""

    key: DatumKey
    value: Value | None
    revision: int


# ---------------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------------


def encode_instance(inst: Instance) -> dict[str, Any]:
    return {
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
    }


def decode_instance(data: Mapping[str, Any]) -> Instance:
    return Instance(
        ip=str(data["ip"]),
        port=int(data["port"]),
        cluster=str(data["clusterName"]),
        weight=float(data["weight"]),
        healthy=bool(data["healthy"]),
        enabled=bool(data["enabled"]),
        ephemeral=bool(data["ephemeral"]),
        metadata=freeze_metadata({str(k): str(v) for k, v in data.get("metadata", {}).items()}),
        instance_id=str(data.get("instanceId", "")),
        app=str(data.get("app", "DEFAULT")),
        marked=bool(data.get("marked", False)),
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


def encode_value(kind: KeyKind, value: Value | None) -> Any:
    if value is None:
        return None
    if kind in (KeyKind.EPHEMERAL_INSTANCES, KeyKind.PERSISTENT_INSTANCES):
        assert isinstance(value, Mapping)
        return [encode_instance(i) for i in value.values()]
    if kind is KeyKind.SERVICE_META:
        assert isinstance(value, ServiceMeta)
        return {
            "protectThreshold": value.protect_threshold,
            "metadata": dict(value.metadata),
            "selector": value.selector.to_json(),
            "clusters": [_encode_cluster(c) for c in value.clusters.values()],
        }
    assert isinstance(value, Switches)
    return value.to_json()


def decode_value(kind: KeyKind, data: Any) -> Value | None:
    if data is None:
        return None
    if kind in (KeyKind.EPHEMERAL_INSTANCES, KeyKind.PERSISTENT_INSTANCES):
        return instance_set([decode_instance(d) for d in data])
    if kind is KeyKind.SERVICE_META:
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
        )
    return Switches.from_json(data)


def encode_datum(datum: Datum) -> dict[str, Any]:
    return {
        "key": datum.key.encode(),
        "revision": datum.revision,
        "value": encode_value(datum.key.kind, datum.value),
    }


def decode_datum(data: Mapping[str, Any]) -> Datum:
    key = DatumKey.decode(str(data["key"]))
    return Datum(key, decode_value(key.kind, data["value"]), int(data["revision"]))


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
