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

from lib.errors import InvalidParam
from lib.interning import Shared
from naming.parsing import JsonSyntaxError, parse_json, to_int, to_number

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
    # The protocol that registered the instance (``eureka``, ``airlift``); none for Nacos
    # clients. Self-preservation (naming.preservation) watches the sources configured for it.
    SOURCE = "preserved.source"


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


# -- namespaces ---------------------------------------------------------------------------------

# Nacos's rule for a custom namespace id (``NamespaceController``): ``[\w-]+``, at most 128.
_NEW_NAMESPACE_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
# Nacos 2.x refuses these in a namespace name (``NamespaceController.NAMESPACE_NAME_PATTERN``).
_NAMESPACE_NAME_FORBIDDEN = frozenset("@#$%^&*")
MAX_NAMESPACE_NAME_CHARS = 128
MAX_NAMESPACE_DESC_CHARS = 256


@dataclass(frozen=True, slots=True)
class Namespace:
    """A registered namespace: an id clients use plus a display name and description."""

    id: str
    name: str
    description: str = ""


def check_new_namespace_id(raw: str) -> str:
    if len(raw) > MAX_NAMESPACE_CHARS:
        raise InvalidParam(f"namespaceId length greater than {MAX_NAMESPACE_CHARS}")
    if not _NEW_NAMESPACE_ID_RE.fullmatch(raw):
        raise InvalidParam(
            "namespaceId format is incorrect: only letters, digits, '_' and '-' are allowed"
        )
    if raw.lower() == DEFAULT_NAMESPACE:
        raise InvalidParam("namespaceId 'public' is reserved")
    return raw


def check_namespace_text(name: str, description: str) -> tuple[str, str]:
    name = name.strip()
    if not name:
        raise InvalidParam("namespaceName is required")
    if len(name) > MAX_NAMESPACE_NAME_CHARS:
        raise InvalidParam(f"namespaceName longer than {MAX_NAMESPACE_NAME_CHARS} characters")
    if len(description) > MAX_NAMESPACE_DESC_CHARS:
        raise InvalidParam(f"namespaceDesc longer than {MAX_NAMESPACE_DESC_CHARS} characters")
    for text, what in ((name, "namespaceName"), (description, "namespaceDesc")):
        bad = sorted(set(text) & _NAMESPACE_NAME_FORBIDDEN)
        if bad:
            raise InvalidParam(f"{what} must not contain {''.join(bad)}")
    return name, description


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


# Most instances repeat a few ports and weights: one int or float object each instead of one per
# instance (28 and 24 bytes; the Distro decode of a peer's instances made a new one every time).
_PORTS: Shared[int, int] = Shared(65_536)
_WEIGHTS: Shared[float, float] = Shared(4_096)


def shared_port(port: int) -> int:
    return _PORTS.share(port, port)


def shared_weight(weight: float) -> float:
    if not weight:
        return weight  # -0.0 == 0.0: sharing would change the sign a client sent
    return _WEIGHTS.share(weight, weight)


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
    parsed = None
    # Only text opening with "{" can be the JSON object form; anything else is k=v, so a
    # k=v value full of brackets never meets the JSON depth limit.
    if raw.lstrip().startswith("{"):
        try:
            parsed = parse_json(raw, "metadata", MAX_METADATA_CHARS)
        except JsonSyntaxError:
            parsed = None  # Nacos falls back to k=v when Jackson cannot read it
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
    return shared_metadata(result)


# Instances of one service mostly carry the same metadata (a client's fixed set, such as
# preserved.register.source): one read-only mapping for all of them, not ~300 bytes each. Only
# small ones: the table keeps what it holds alive, at most ~4 MB of it.
_METADATA: Shared[tuple[tuple[str, str], ...], Mapping[str, str]] = Shared(2_048)
MAX_SHARED_METADATA_CHARS = 1_024


def shared_metadata(values: Mapping[str, str]) -> Mapping[str, str]:
    """:func:`freeze_metadata` of string keys and values, shared with any equal earlier one
    (equal in content and order, so the shared mapping reads exactly as ``values`` would)."""
    if not values or len(values) > MAX_METADATA_ENTRIES:
        return freeze_metadata(values)  # the empty one is shared, too many entries refused
    items = tuple(values.items())
    if sum(len(k) + len(v) for k, v in items) > MAX_SHARED_METADATA_CHARS:
        return freeze_metadata(values)
    known = _METADATA.find(items)
    if known is not None:
        return known
    return _METADATA.share(items, freeze_metadata(values))


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
    """Identity of an instance inside one (ephemeral or persistent) list of a service.

    ``native`` is the id a foreign protocol gives the instance (a Eureka instance id, an
    airlift service announcement's UUID): two of them on one ip:port are two instances. Empty
    for Nacos clients, whose identity stays (cluster, ip, port)."""

    cluster: str
    ip: str
    port: int
    native: str = ""

    def datum_key(self) -> str:
        base = f"{self.ip}:{self.port}:unknown:{self.cluster}"
        return f"{base}:{self.native}" if self.native else base

    def to_wire(self) -> list[str | int]:
        """As replicated changes carry it: three items unless a native id is set, so keys of
        Nacos clients encode as they always did."""
        if self.native:
            return [self.cluster, self.ip, self.port, self.native]
        return [self.cluster, self.ip, self.port]


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
    # Wall-clock ms of the registration that created it (0: unknown, stored before it was kept).
    registered_ms: int = 0
    # "<holder member>|<connection id>" for an instance bound to a client connection (the Nacos
    # 2.x gRPC API, ``naming.leases``): it lives as long as that connection and never expires
    # by beats. Empty: a classic beat-based instance. Replicated, never rendered to clients.
    lease: str = ""
    # The id a foreign protocol knows it by (``InstanceKey.native``); empty for Nacos clients.
    native_id: str = ""

    @property
    def key(self) -> InstanceKey:
        if self.native_id:
            return InstanceKey(self.cluster, self.ip, self.port, self.native_id)
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


def as_shown(inst: Instance) -> Instance:
    """The instance as clients are shown it: its weight clamped (a copy only if that changes it)."""
    weight = clamp_weight(inst.weight)
    return inst if weight == inst.weight else inst.with_changes(weight=weight)


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
        data = parse_json(raw, "selector")
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
    # Leaders an operator pinned (``naming.leaders``): scope ("" for the whole service, else a
    # cluster name) -> "ip:port". Empty for almost every service.
    pinned_leaders: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


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
        """Restore stored switches (a snapshot, a peer's datum). Lenient on purpose: a field
        an older version stored without validation (``Infinity``, ``{}``, 10^30) falls back to
        its default instead of failing the restore or making the switches JSON unreadable."""
        values: dict[str, Any] = {}
        for name in _SWITCH_FIELDS:
            if name in data:
                try:
                    values[name] = check_switch(name, data[name])
                except InvalidParam:
                    continue
        return cls(**values)


_BOOL_TRUE = frozenset({"true", "on", "yes", "y", "t"})


def to_bool(raw: str) -> bool:
    """commons-lang ``BooleanUtils.toBoolean``: case-insensitive, anything else is false."""
    return raw.lower() in _BOOL_TRUE


# -- switch validation: one checker per field, shared by single entries, batch and restore --

MAX_SWITCH_MILLIS = 24 * 3600 * 1000  # a day: longer is never meant and overflows no client
MAX_CHECK_TIMES = 1000
MAX_SWITCH_LIST = 64
MAX_VERSION_CHARS = 32
SERVER_STATUSES = ("UP", "DOWN", "STARTING", "PAUSED", "WRITE_ONLY", "READ_ONLY")
_VERSION_RE = re.compile(r"\d+(\.\d+)*")

# Integer switches: (minimum, maximum). Minimums are Nacos's (SwitchManager.update).
_SWITCH_INT_RANGES: dict[str, tuple[int, int]] = {
    "defaultPushCacheMillis": (10000, MAX_SWITCH_MILLIS),
    "clientBeatInterval": (1, MAX_SWITCH_MILLIS),
    "defaultCacheMillis": (1000, MAX_SWITCH_MILLIS),
    "checkTimes": (1, MAX_CHECK_TIMES),
    "serverStatusSynchronizationPeriodMillis": (1000, MAX_SWITCH_MILLIS),
    "serviceStatusSynchronizationPeriodMillis": (5000, MAX_SWITCH_MILLIS),
    "distroServerExpiredMillis": (1, MAX_SWITCH_MILLIS),
}
_SWITCH_FIELDS = tuple(f.name for f in fields(Switches))
_SWITCH_BOOLS = frozenset(f.name for f in fields(Switches) if isinstance(f.default, bool))
_PUSH_VERSIONS = {
    "java": "pushJavaVersion",
    "python": "pushPythonVersion",
    "c": "pushCVersion",
    "go": "pushGoVersion",
    "csharp": "pushCSharpVersion",
}


def _json_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidParam(f"{name} must be true or false, got {json.dumps(value)[:50]}")


def _check_version(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_VERSION_CHARS:
        raise InvalidParam(f"{name} must be a version string such as 1.2.3")
    if not _VERSION_RE.fullmatch(value):
        raise InvalidParam(f"{name} must be a version string such as 1.2.3: {value}")
    return value


def _check_limited(value: Any) -> Mapping[str, int]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping) or len(value) > MAX_SWITCH_LIST:
        raise InvalidParam(f"limitedUrlMap must map at most {MAX_SWITCH_LIST} urls to codes")
    limited: dict[str, int] = {}
    for url, code in value.items():
        if not isinstance(url, str) or not url or len(url) > MAX_NAME_CHARS:
            raise InvalidParam("limitedUrlMap urls must be non-empty strings")
        # Answered as the HTTP status of a refused request: an error status (Django cannot
        # send past 599, and a 1xx/2xx/3xx answer would not tell the client it was refused).
        limited[url] = to_int(code, "limitedUrlMap code", 400, 599)
    return MappingProxyType(limited)


def _check_status(value: Any) -> str | None:
    if value is None or value in ("", "null"):
        return None
    status = value.upper() if isinstance(value, str) else None
    if status not in SERVER_STATUSES:
        raise InvalidParam(f"illegal server status: {json.dumps(value)[:50]}")
    return status


def _check_masters(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SWITCH_LIST:
        raise InvalidParam(f"masters must be a list of at most {MAX_SWITCH_LIST} addresses")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_IP_CHARS + 6:
            raise InvalidParam("masters must hold host:port strings")
    return tuple(value)


def check_switch(name: str, value: Any, label: str | None = None) -> Any:
    """One :class:`Switches` field from parsed JSON (or a query string), typed and in range.

    Raises only ``InvalidParam``: it runs inside the Raft apply, where anything else would be
    an error on every replica's apply thread.
    """
    label = label or name
    if name in _SWITCH_INT_RANGES:
        low, high = _SWITCH_INT_RANGES[name]
        return to_int(value, label, low, high)
    if name in _SWITCH_BOOLS:
        return _json_bool(value, label)
    if name == "distroThreshold":
        threshold = to_number(value, label, 0.0, 1.0)
        if threshold <= 0:
            raise InvalidParam(f"distroThreshold can not be zero or negative: {value}")
        return threshold
    if name in _PUSH_VERSIONS.values():
        return _check_version(value, label)
    if name == "limitedUrlMap":
        return _check_limited(value)
    if name == "overriddenServerStatus":
        return _check_status(value)
    if name == "masters":
        return _check_masters(value)
    raise InvalidParam(f"unknown switch: {name}")


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
    integers = {
        "clientBeatInterval": "clientBeatInterval",
        "pushCacheMillis": "defaultPushCacheMillis",
        "defaultCacheMillis": "defaultCacheMillis",
        "serviceStatusSynchronizationPeriodMillis": "serviceStatusSynchronizationPeriodMillis",
        "serverStatusSynchronizationPeriodMillis": "serverStatusSynchronizationPeriodMillis",
        "healthCheckTimes": "checkTimes",
        "distroServerExpiredMillis": "distroServerExpiredMillis",
    }
    changes: dict[str, Any]
    if entry in simple_bools:
        changes = {simple_bools[entry]: to_bool(raw)}  # lenient, as Nacos's BooleanUtils
    elif entry in integers:
        changes = {integers[entry]: check_switch(integers[entry], raw, entry)}
    elif entry == "distroThreshold":
        changes = {"distroThreshold": check_switch(entry, raw)}
    elif entry == "pushVersion":
        agent, _, version = raw.partition(":")
        if agent.lower() not in _PUSH_VERSIONS:
            raise InvalidParam(f"illegal pushVersion: {raw[:100]}")
        name = _PUSH_VERSIONS[agent.lower()]
        changes = {name: check_switch(name, version, "pushVersion")}
    elif entry == "limitedUrlMap":
        limited: dict[str, Any] = {}
        if raw.strip() and raw.strip() != "null":  # "null" clears, as for the other entries
            for item in raw.split(","):
                url, sep, code = item.rpartition(":")
                if not sep or not url.strip():
                    raise InvalidParam(f"limitedUrlMap item must be url:code: {item[:100]}")
                limited[url.strip()] = code
        changes = {"limitedUrlMap": check_switch(entry, limited)}
    elif entry == "overriddenServerStatus":
        changes = {entry: check_switch(entry, raw)}
    elif entry == "masters":
        changes = {entry: check_switch(entry, [m for m in raw.split(",") if m])}
    elif entry == "batch":
        data = parse_json(raw, "batch")
        if not isinstance(data, dict):
            raise InvalidParam("batch must be a SwitchDomain JSON object")
        # Fields we do not model (adWeightMap, the health params, ...) are ignored, so what GET
        # returns can be sent back as a batch.
        changes = {k: check_switch(k, v) for k, v in data.items() if k in _SWITCH_FIELDS}
    else:
        return current
    return replace(current, **changes)
