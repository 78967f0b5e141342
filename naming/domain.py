"""The naming domain: namespace → group → service → cluster → instance, as typed values.

Plain typed Python with no Django imports. Every value here is immutable so that one object can be
shared by the stores, the registry views and the response caches without copies or locks.
The validation rules are the Nacos 1.4 ones (``../shared/nacos-v1-api.md`` §A, §C), except that a
client error is always reported as a 4xx.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from naming.errors import InvalidParam

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
GROUP_SEPARATOR = "@@"
SWITCH_DOMAIN_NAME = "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"

MAX_WEIGHT = 10000.0
MIN_POSITIVE_WEIGHT = 0.01
DEFAULT_HEARTBEAT_INTERVAL_MS = 5000
DEFAULT_HEARTBEAT_TIMEOUT_MS = 15000
DEFAULT_IP_DELETE_TIMEOUT_MS = 30000

# Limits Nacos does not have; chosen so one request cannot bloat every replica (Consul caps
# metadata at 64 pairs of 128/512 chars; we allow more because Nacos users store JSON blobs).
MAX_METADATA_CHARS = 16 * 1024
MAX_METADATA_ENTRIES = 128
MAX_NAME_CHARS = 512
MAX_IP_CHARS = 253

_SERVICE_NAME_RE = re.compile(r"[0-9a-zA-Z@.:_-]+")
_CLUSTER_NAME_RE = re.compile(r"[0-9a-zA-Z-]+")
# Nacos checks the ip only weakly; we still refuse what cannot be an address or a host name.
_IP_RE = re.compile(r"[0-9A-Za-z.:_%\[\]-]+")
_DIGITS_RE = re.compile(r"\d+")
_NAMESPACE_RE = re.compile(r"[0-9a-zA-Z_.-]+")
MAX_NAMESPACE_CHARS = 128

EMPTY_METADATA: Mapping[str, str] = MappingProxyType({})


class PreservedKey(StrEnum):
    HEART_BEAT_INTERVAL = "preserved.heart.beat.interval"
    HEART_BEAT_TIMEOUT = "preserved.heart.beat.timeout"
    IP_DELETE_TIMEOUT = "preserved.ip.delete.timeout"
    INSTANCE_ID_GENERATOR = "preserved.instance.id.generator"


class IdGenerator(StrEnum):
    SIMPLE = "simple"
    SNOWFLAKE = "snowflake"


class CheckType(StrEnum):
    TCP = "TCP"
    HTTP = "HTTP"
    MYSQL = "MYSQL"
    NONE = "NONE"


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceName:
    """A service inside a namespace; ``grouped`` is ``group@@name`` as Nacos keeps it."""

    namespace: str
    grouped: str

    @property
    def group(self) -> str:
        return self.grouped.split(GROUP_SEPARATOR, 1)[0]

    @property
    def name(self) -> str:
        return self.grouped.split(GROUP_SEPARATOR, 1)[1]

    def __str__(self) -> str:
        return f"{self.namespace}##{self.grouped}"


def namespace_or_default(raw: str | None) -> str:
    """Blank means ``public``. Nacos does not check namespace ids in naming; we hold them to the
    config module's rule (word characters, ``.`` and ``-``, at most 128) so a key can never
    contain our ``##`` separator."""
    if not raw:
        return DEFAULT_NAMESPACE
    if len(raw) > MAX_NAMESPACE_CHARS or not _NAMESPACE_RE.fullmatch(raw):
        raise InvalidParam(
            f"namespaceId can only have these characters: 0-9a-zA-Z_.-, current: "
            f"{raw[:MAX_NAMESPACE_CHARS]}"
        )
    return raw


def fold_service_name(service: str, group: str | None) -> str:
    """Nacos DistroFilter folding: ``group@@service`` unless the name already holds ``@@``."""
    service = service.strip()
    if GROUP_SEPARATOR not in service:
        service = f"{group or DEFAULT_GROUP}{GROUP_SEPARATOR}{service}"
    check_grouped_name(service)
    return service


def check_grouped_name(grouped: str) -> None:
    parts = grouped.split(GROUP_SEPARATOR)
    if len(parts) <= 1 or not parts[1]:
        raise InvalidParam(
            "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'"
        )
    if not parts[0]:
        raise InvalidParam("Param 'serviceName' is illegal, groupName can't be empty")
    if len(grouped) > MAX_NAME_CHARS or not _SERVICE_NAME_RE.fullmatch(grouped):
        shown = grouped[:MAX_NAME_CHARS]
        raise InvalidParam(
            f"dom name can only have these characters: 0-9a-zA-Z-._:, current: {shown}"
        )


def check_cluster_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or not _CLUSTER_NAME_RE.fullmatch(name):
        shown = name[:MAX_NAME_CHARS]
        raise InvalidParam(
            f"cluster name can only have these characters: 0-9a-zA-Z-, current: {shown}"
        )
    return name


def check_ip(ip: str) -> str:
    if len(ip) > MAX_IP_CHARS or not _IP_RE.fullmatch(ip):
        raise InvalidParam(f"ip format invalid: {ip[:MAX_IP_CHARS]}")
    return ip


def check_port(port: int, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise InvalidParam(f"port out of range (1-65535): {port}")
    return port


def check_weight(weight: float) -> float:
    if math.isnan(weight) or not 0.0 <= weight <= MAX_WEIGHT:
        raise InvalidParam("instance format invalid: The weights range from 0.0 to 10000.0")
    return weight


def clamp_weight(weight: float) -> float:
    """Applied when a list reaches the registry (Nacos ``Service.onChange``)."""
    if weight > MAX_WEIGHT:
        return MAX_WEIGHT
    if 0.0 < weight < MIN_POSITIVE_WEIGHT:
        return MIN_POSITIVE_WEIGHT
    return weight


def parse_metadata(raw: str | None) -> Mapping[str, str]:
    """JSON object first, then ``k=v,k=v`` (Nacos ``UtilsAndCommons.parseMetadata``)."""
    if raw is None or not raw.strip():
        return EMPTY_METADATA
    if len(raw) > MAX_METADATA_CHARS:
        raise InvalidParam(f"metadata too large: {len(raw)} chars, at most {MAX_METADATA_CHARS}")
    result: dict[str, str] = {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key, value in parsed.items():
            if isinstance(value, (dict, list)):
                raise InvalidParam(f"metadata format incorrect:{raw[:200]}")
            result[str(key)] = _java_string(value)
    else:
        for pair in raw.split(","):
            kv = pair.split("=")
            if len(kv) != 2:
                raise InvalidParam(f"metadata format incorrect:{raw[:200]}")
            result[kv[0]] = kv[1]
    return freeze_metadata(result)


def freeze_metadata(values: Mapping[str, str]) -> Mapping[str, str]:
    if len(values) > MAX_METADATA_ENTRIES:
        raise InvalidParam(f"metadata has {len(values)} entries, at most {MAX_METADATA_ENTRIES}")
    if not values:
        return EMPTY_METADATA
    return MappingProxyType(dict(values))


def _java_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _ms_from_metadata(metadata: Mapping[str, str], key: PreservedKey, default: int) -> int:
    raw = metadata.get(key)
    if raw is not None and _DIGITS_RE.fullmatch(raw):
        return int(raw)
    return default


# ---------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------


class InstanceKey(NamedTuple):
    """Identity of an instance inside one (ephemeral or persistent) list of a service."""

    cluster: str
    ip: str
    port: int

    def datum_key(self) -> str:
        return f"{self.ip}:{self.port}:unknown:{self.cluster}"


@dataclass(frozen=True, slots=True)
class Instance:
    ip: str
    port: int
    cluster: str = DEFAULT_CLUSTER
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    ephemeral: bool = True
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    instance_id: str = ""
    app: str = "DEFAULT"
    marked: bool = False

    @property
    def key(self) -> InstanceKey:
        return InstanceKey(self.cluster, self.ip, self.port)

    @property
    def heartbeat_interval_ms(self) -> int:
        return _ms_from_metadata(
            self.metadata, PreservedKey.HEART_BEAT_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL_MS
        )

    @property
    def heartbeat_timeout_ms(self) -> int:
        return _ms_from_metadata(
            self.metadata, PreservedKey.HEART_BEAT_TIMEOUT, DEFAULT_HEARTBEAT_TIMEOUT_MS
        )

    @property
    def ip_delete_timeout_ms(self) -> int:
        return _ms_from_metadata(
            self.metadata, PreservedKey.IP_DELETE_TIMEOUT, DEFAULT_IP_DELETE_TIMEOUT_MS
        )

    @property
    def id_generator(self) -> str:
        return self.metadata.get(PreservedKey.INSTANCE_ID_GENERATOR, IdGenerator.SIMPLE)

    def with_changes(self, **changes: Any) -> Instance:
        return replace(self, **changes)


def simple_instance_id(ip: str, port: int, cluster: str, grouped: str) -> str:
    return f"{ip}#{port}#{cluster}#{grouped}"


# ---------------------------------------------------------------------------------------------
# Services, clusters, switches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthChecker:
    type: CheckType = CheckType.TCP
    path: str = ""
    headers: str = ""
    expected_code: int = 200
    user: str | None = None
    pwd: str | None = None
    cmd: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.type is CheckType.HTTP:
            return {
                "type": "HTTP",
                "path": self.path,
                "headers": self.headers,
                "expectedResponseCode": self.expected_code,
            }
        if self.type is CheckType.MYSQL:
            out: dict[str, Any] = {"type": "MYSQL"}
            for name in ("user", "pwd", "cmd"):
                value = getattr(self, name)
                if value is not None:
                    out[name] = value
            return out
        return {"type": self.type.value}

    @classmethod
    def from_json(cls, raw: Any) -> HealthChecker:
        """Unknown types become NONE, as Jackson's polymorphic default does in Nacos."""
        if not isinstance(raw, dict):
            raise InvalidParam("healthChecker must be a JSON object")
        type_name = str(raw.get("type", "")).upper()
        try:
            check_type = CheckType(type_name)
        except ValueError:
            check_type = CheckType.NONE
        code = raw.get("expectedResponseCode", 200)
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise InvalidParam("healthChecker.expectedResponseCode must be an HTTP status")
        return cls(
            type=check_type,
            path=str(raw.get("path", "") or ""),
            headers=str(raw.get("headers", "") or ""),
            expected_code=code,
            user=raw.get("user"),
            pwd=raw.get("pwd"),
            cmd=raw.get("cmd"),
        )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    health_checker: HealthChecker = field(default_factory=HealthChecker)
    check_port: int = 80
    use_instance_port: bool = True
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)


@dataclass(frozen=True, slots=True)
class Selector:
    type: str = "none"
    expression: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.type == "none":
            return {"type": "none"}
        return {"type": self.type, "expression": self.expression}

    @classmethod
    def parse(cls, raw: str | None) -> Selector:
        if raw is None or not raw.strip():
            return cls()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidParam(f"selector must be JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidParam("selector must be a JSON object")
        kind = str(data.get("type", "none")).lower()
        if kind not in ("none", "label"):
            raise InvalidParam(f"unsupported selector type: {kind}")
        return cls(type=kind, expression=str(data.get("expression", "") or ""))


@dataclass(frozen=True, slots=True)
class ServiceMeta:
    """What POST/PUT /service and PUT /cluster store; replicated through Raft."""

    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    selector: Selector = field(default_factory=Selector)
    clusters: Mapping[str, ClusterConfig] = field(default_factory=lambda: MappingProxyType({}))


def check_protect_threshold(value: float) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidParam(f"protectThreshold must be between 0 and 1: {value}")
    return value


@dataclass(frozen=True, slots=True)
class Switches:
    """Runtime switches (Nacos ``SwitchDomain``); JSON field names match Nacos exactly."""

    defaultPushCacheMillis: int = 10000
    clientBeatInterval: int = 5000
    defaultCacheMillis: int = 3000
    distroThreshold: float = 0.7
    healthCheckEnabled: bool = True
    autoChangeHealthCheckEnabled: bool = True
    distroEnabled: bool = True
    enableStandalone: bool = True
    pushEnabled: bool = True
    checkTimes: int = 3
    serverStatusSynchronizationPeriodMillis: int = 2000
    serviceStatusSynchronizationPeriodMillis: int = 5000
    disableAddIP: bool = False
    sendBeatOnly: bool = False
    lightBeatEnabled: bool = True
    distroServerExpiredMillis: int = 10000
    pushGoVersion: str = "0.1.0"
    pushJavaVersion: str = "0.1.0"
    pushPythonVersion: str = "0.4.3"
    pushCVersion: str = "1.0.12"
    pushCSharpVersion: str = "0.9.0"
    enableAuthentication: bool = False
    defaultInstanceEphemeral: bool = True
    limitedUrlMap: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    overriddenServerStatus: str | None = None
    masters: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": SWITCH_DOMAIN_NAME, "adWeightMap": {}}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["httpHealthParams"] = {"max": 5000, "min": 500, "factor": 0.85}
        out["tcpHealthParams"] = {"max": 5000, "min": 1000, "factor": 0.75}
        out["mysqlHealthParams"] = {"max": 3000, "min": 2000, "factor": 0.65}
        out["incrementalList"] = []
        out["healthCheckWhiteList"] = []
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Switches:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        if "limitedUrlMap" in values:
            values["limitedUrlMap"] = MappingProxyType(
                {str(k): int(v) for k, v in dict(values["limitedUrlMap"] or {}).items()}
            )
        if values.get("masters") is not None:
            values["masters"] = tuple(values["masters"])
        return cls(**values)


_BOOL_TRUE = frozenset({"true", "on", "yes", "y", "t"})


def to_bool(raw: str) -> bool:
    """commons-lang ``BooleanUtils.toBoolean``: case-insensitive, anything else is false."""
    return raw.lower() in _BOOL_TRUE


def _int_at_least(entry: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"{entry} must be an integer: {raw}") from None
    if value < minimum:
        raise InvalidParam(f"{entry} must be at least {minimum}: {value}")
    return value


def apply_switch(current: Switches, entry: str, raw: str) -> Switches:
    """Validate one ``PUT /operator/switches`` entry (Nacos ``SwitchManager.update``).

    Unknown entries are accepted and ignored, as Nacos does.
    """
    simple_bools = {
        "distro": "distroEnabled",
        "check": "healthCheckEnabled",
        "pushEnabled": "pushEnabled",
        "disableAddIP": "disableAddIP",
        "sendBeatOnly": "sendBeatOnly",
        "enableStandalone": "enableStandalone",
        "defaultInstanceEphemeral": "defaultInstanceEphemeral",
        "lightBeatEnabled": "lightBeatEnabled",
        "autoChangeHealthCheckEnabled": "autoChangeHealthCheckEnabled",
    }
    minimums = {
        "clientBeatInterval": ("clientBeatInterval", 1),
        "pushCacheMillis": ("defaultPushCacheMillis", 10000),
        "defaultCacheMillis": ("defaultCacheMillis", 1000),
        "serviceStatusSynchronizationPeriodMillis": (
            "serviceStatusSynchronizationPeriodMillis",
            5000,
        ),
        "serverStatusSynchronizationPeriodMillis": (
            "serverStatusSynchronizationPeriodMillis",
            1000,
        ),
        "healthCheckTimes": ("checkTimes", 1),
        "distroServerExpiredMillis": ("distroServerExpiredMillis", 1),
    }
    if entry in simple_bools:
        changes: dict[str, Any] = {simple_bools[entry]: to_bool(raw)}
        return replace(current, **changes)
    if entry in minimums:
        name, minimum = minimums[entry]
        changes = {name: _int_at_least(entry, raw, minimum)}
        return replace(current, **changes)
    if entry == "distroThreshold":
        try:
            threshold = float(raw)
        except ValueError:
            raise InvalidParam(f"distroThreshold must be a number: {raw}") from None
        if not threshold > 0 or math.isinf(threshold):
            raise InvalidParam("distroThreshold can not be zero or negative: " + raw)
        return replace(current, distroThreshold=threshold)
    if entry == "pushVersion":
        agent, _, version = raw.partition(":")
        names = {
            "java": "pushJavaVersion",
            "python": "pushPythonVersion",
            "c": "pushCVersion",
            "go": "pushGoVersion",
            "csharp": "pushCSharpVersion",
        }
        if agent.lower() not in names or not re.fullmatch(r"\d+(\.\d+)*", version):
            raise InvalidParam(f"illegal pushVersion: {raw}")
        changes = {names[agent.lower()]: version}
        return replace(current, **changes)
    if entry == "limitedUrlMap":
        limited: dict[str, int] = {}
        if raw.strip() and raw.strip() != "null":  # "null" clears, as for the other entries
            for item in raw.split(","):
                url, sep, code = item.rpartition(":")
                if not sep or not url:
                    raise InvalidParam(f"limitedUrlMap item must be url:code: {item}")
                limited[url.strip()] = _int_at_least("limitedUrlMap code", code.strip(), 100)
        return replace(current, limitedUrlMap=MappingProxyType(limited))
    if entry == "overriddenServerStatus":
        status = None if raw in ("", "null") else raw.upper()
        if status not in (None, "UP", "DOWN", "STARTING", "PAUSED", "WRITE_ONLY", "READ_ONLY"):
            raise InvalidParam(f"illegal server status: {raw}")
        return replace(current, overriddenServerStatus=status)
    if entry == "masters":
        return replace(current, masters=tuple(m for m in raw.split(",") if m))
    if entry == "batch":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidParam(f"batch must be a SwitchDomain JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidParam("batch must be a JSON object")
        try:
            return Switches.from_json({**_switch_fields(current), **data})
        except (TypeError, ValueError) as exc:
            raise InvalidParam(f"batch is not a valid SwitchDomain: {exc}") from None
    return current


def _switch_fields(switches: Switches) -> dict[str, Any]:
    return {f.name: getattr(switches, f.name) for f in fields(switches)}
