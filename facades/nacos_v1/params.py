"""The API edge: raw request parameters → typed commands, validated once.

Nothing deeper than this module reads request data. Parameter semantics are Nacos's
(``WebUtils``): query string and form body both count, the query string wins, values are trimmed,
and a blank value is the same as a missing one. Booleans are case-insensitive because the Python
SDK sends ``True``/``False``.

These parsers are plain functions rather than DRF serializers: they sit on the three hottest
endpoints (register, beat, list) and a DRF serializer costs more than the rest of the request
(see the closing note of issue #2 for the measurement).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from facades.nacos_v1.clients import ClientInfo
from lib.errors import InvalidParam, MissingParam
from naming.commands import (
    Beat,
    BeatInfo,
    InstanceRef,
    MetadataBatch,
    Page,
    PatchInstanceCommand,
    PinLeaderCommand,
    RegisterInstance,
    ServiceSpec,
    UnpinLeaderCommand,
)
from naming.domain import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    GROUP_SEPARATOR,
    MAX_WEIGHT,
    ClusterConfig,
    HealthChecker,
    Instance,
    InstanceKey,
    Selector,
    ServiceName,
    check_cluster_name,
    check_grouped_name,
    check_ip,
    check_port,
    check_protect_threshold,
    check_weight,
    fold_service_name,
    namespace_or_default,
    parse_metadata,
    shared_port,
    shared_weight,
    to_bool,
)
from naming.parsing import JAVA_INT_MAX, JAVA_INT_MIN, parse_json, to_int, to_number

MAX_PAGE_SIZE = 10000


class Params:
    """Read-only view over query + form parameters with Nacos's ``WebUtils`` rules."""

    __slots__ = ("_form", "_query")

    def __init__(self, query: Mapping[str, str], form: Mapping[str, str] | None = None) -> None:
        self._query = query
        self._form = form or {}

    def raw(self, name: str) -> str | None:
        value = self._query.get(name)
        if value is None:
            value = self._form.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise MissingParam(name)
        return value

    def optional(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def integer(self, name: str, default: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise MissingParam(name)
            return default
        try:
            result = int(value)
        except ValueError:
            raise InvalidParam(f'For input string: "{value[:100]}"') from None
        # Java's Integer.parseInt range: every integer parameter is a Java int in Nacos, and
        # nothing past it may reach a slice, a database query or a stored value.
        if not JAVA_INT_MIN <= result <= JAVA_INT_MAX:
            raise InvalidParam(f'For input string: "{value[:100]}" (out of range)')
        return result

    def number(self, name: str, default: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise MissingParam(name)
            return default
        try:
            result = float(value)
        except ValueError:
            raise InvalidParam(f'For input string: "{value[:100]}"') from None
        if math.isnan(result) or math.isinf(result):
            raise InvalidParam(f'For input string: "{value[:100]}"')
        return result

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        return default if value is None else to_bool(value)

    def strict_boolean(self, name: str, default: bool) -> bool:
        """``Boolean.parseBoolean``: true only for (any case of) ``true``."""
        value = self.raw(name)
        return default if value is None else value.lower() == "true"


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def service_name(params: Params) -> ServiceName:
    """``serviceName`` (or legacy ``dom``) folded with ``groupName`` as DistroFilter does."""
    raw = params.raw("serviceName") or params.raw("dom")
    if raw is None:
        raise MissingParam("serviceName")
    grouped = fold_service_name(raw, params.raw("groupName") or DEFAULT_GROUP)
    return ServiceName(namespace_or_default(params.raw("namespaceId")), grouped)


def cluster_param(params: Params, *, legacy: bool = True) -> str:
    name = params.raw("clusterName")
    if name is None and legacy:
        name = params.raw("cluster")
    # Interned: every instance keeps its cluster name, and clients send the same few.
    return sys.intern(check_cluster_name(name or DEFAULT_CLUSTER))


def instance_key(params: Params, *, legacy_cluster: bool = True) -> InstanceKey:
    ip = check_ip(params.required("ip"))
    port = shared_port(check_port(params.integer("port")))
    return InstanceKey(cluster_param(params, legacy=legacy_cluster), ip, port)


def register_instance(params: Params, default_ephemeral: bool) -> RegisterInstance:
    service = service_name(params)
    key = instance_key(params)
    enabled_raw = params.raw("enabled")
    enabled = to_bool(enabled_raw) if enabled_raw is not None else params.boolean("enable", True)
    instance = Instance(
        ip=key.ip,
        port=key.port,
        cluster=key.cluster,
        weight=shared_weight(check_weight(params.number("weight", 1.0))),
        healthy=params.boolean("healthy", True),
        enabled=enabled,
        ephemeral=params.boolean("ephemeral", default_ephemeral),
        metadata=parse_metadata(params.raw("metadata")),
        app=sys.intern(params.optional("app", "DEFAULT")),
    )
    return RegisterInstance(service, instance)


def instance_ref(params: Params, default_ephemeral: bool) -> InstanceRef:
    return InstanceRef(
        service_name(params), instance_key(params), params.boolean("ephemeral", default_ephemeral)
    )


def patch_instance(params: Params) -> PatchInstanceCommand:
    weight = params.raw("weight")
    healthy = params.raw("healthy")
    enabled = params.raw("enabled")
    metadata = params.raw("metadata")
    return PatchInstanceCommand(
        service=service_name(params),
        key=instance_key(params),
        weight=None if weight is None else check_weight(params.number("weight")),
        healthy=None if healthy is None else to_bool(healthy),
        enabled=None if enabled is None else to_bool(enabled),
        metadata=None if metadata is None else parse_metadata(metadata),
        app=params.raw("app"),
    )


def leader_cluster(params: Params) -> str | None:
    """``service/leader``: ``clusterName`` names a cluster's leader; absent, the service's."""
    name = params.raw("clusterName")
    return None if name is None else check_cluster_name(name)


def pin_leader(params: Params) -> PinLeaderCommand:
    return PinLeaderCommand(
        service_name(params),
        leader_cluster(params),
        check_ip(params.required("ip")),
        check_port(params.integer("port")),
    )


def unpin_leader(params: Params) -> UnpinLeaderCommand:
    return UnpinLeaderCommand(service_name(params), leader_cluster(params))


@dataclass(frozen=True, slots=True)
class ListInstances:
    service: ServiceName
    clusters: str  # echoed verbatim
    cluster_names: tuple[str, ...]
    healthy_only: bool
    env: str
    is_check: bool
    client: ClientInfo
    client_ip: str
    udp_port: int
    app: str
    remote_addr: str = ""


def list_instances(params: Params, client: ClientInfo, remote_addr: str = "") -> ListInstances:
    clusters = params.optional("clusters")
    names = tuple(c for c in (x.strip() for x in clusters.split(",")) if c)
    udp_port = params.integer("udpPort", 0)
    check_port(udp_port, allow_zero=True)
    return ListInstances(
        service=service_name(params),
        clusters=clusters,
        cluster_names=names,
        healthy_only=params.strict_boolean("healthyOnly", False),
        env=params.optional("env"),
        is_check=params.strict_boolean("isCheck", False),
        client=client,
        client_ip=params.optional("clientIP"),
        udp_port=udp_port,
        app=params.optional("app"),
        remote_addr=remote_addr,
    )


def beat(params: Params) -> Beat:
    service = service_name(params)
    raw_beat = params.raw("beat")
    info: BeatInfo | None = None
    cluster = params.optional("clusterName", DEFAULT_CLUSTER)
    if raw_beat is not None:
        info = _beat_info(raw_beat)
        if info.cluster:
            cluster = info.cluster
        ip, port = info.ip, info.port
    else:
        ip = check_ip(params.required("ip"))
        port = params.integer("port", 0)
    check_port(port)
    return Beat(service, InstanceKey(check_cluster_name(cluster), check_ip(ip), port), info)


def _beat_info(raw: str) -> BeatInfo:
    data = parse_json(raw, "beat")
    if not isinstance(data, dict):
        raise InvalidParam("beat must be a JSON object")
    ip = data.get("ip")
    if not isinstance(ip, str) or not ip:
        raise MissingParam("ip")
    port = to_int(data.get("port", 0), "beat port")
    weight = to_number(data.get("weight", 1.0), "beat weight", 0.0, MAX_WEIGHT)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidParam("beat metadata must be a JSON object")
    cluster = data.get("cluster")
    ephemeral = data.get("ephemeral", True)
    return BeatInfo(
        ip=ip,
        port=port,
        cluster=str(cluster) if cluster else None,
        weight=weight,
        metadata=parse_metadata(json.dumps(metadata)) if metadata else parse_metadata(None),
        ephemeral=ephemeral if isinstance(ephemeral, bool) else to_bool(str(ephemeral)),
    )


def status_key(params: Params) -> ServiceName:
    """``/instance/statuses?key=ns##group@@svc`` (or without the namespace)."""
    key = params.required("key")
    namespace, sep, grouped = key.partition("##")
    if not sep:
        namespace, grouped = "", key
    check_grouped_name(grouped)
    return ServiceName(namespace_or_default(namespace), grouped)


def metadata_batch(params: Params) -> MetadataBatch:
    service = service_name(params)
    consistency_type = params.optional("consistencyType")
    if consistency_type not in ("", "ephemeral", "persist"):
        raise InvalidParam(f"consistencyType must be ephemeral or persist: {consistency_type}")
    metadata = parse_metadata(params.required("metadata"))
    targets: list[tuple[InstanceKey, bool]] = []
    raw = params.raw("instances")
    if raw is not None:
        items = parse_json(raw, "instances")
        if not isinstance(items, list):
            raise InvalidParam("instances must be a JSON array")
        for item in items:
            if not isinstance(item, dict):
                raise InvalidParam("instances must hold objects")
            port = to_int(item.get("port", 0), "instance port")
            key = InstanceKey(
                check_cluster_name(str(item.get("clusterName") or DEFAULT_CLUSTER)),
                check_ip(str(item.get("ip", ""))),
                check_port(port),
            )
            targets.append((key, to_bool(str(item.get("ephemeral", True)))))
    elif not consistency_type:
        raise MissingParam("instances")
    return MetadataBatch(service, consistency_type, tuple(targets), metadata)


def service_spec(params: Params, *, threshold_required: bool) -> ServiceSpec:
    threshold = params.number("protectThreshold", None if threshold_required else 0.0)
    return ServiceSpec(
        service=service_name(params),
        protect_threshold=check_protect_threshold(threshold),
        metadata=parse_metadata(params.raw("metadata")),
        selector=Selector.parse(params.raw("selector")),
    )


def page(params: Params, *, default_size: int | None = None) -> Page:
    number = params.integer("pageNo", 1 if default_size is not None else None)
    size = params.integer("pageSize", default_size)
    if number < 1:
        raise InvalidParam(f"pageNo must be at least 1: {number}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidParam(f"pageSize must be between 1 and {MAX_PAGE_SIZE}: {size}")
    return Page(number, size)


def cluster_config(params: Params) -> tuple[ServiceName, ClusterConfig]:
    service = service_name(params)
    name = check_cluster_name(params.required("clusterName"))
    check_port_value = check_port(params.integer("checkPort"), allow_zero=True)
    use_instance_port = to_bool(params.required("useInstancePort4Check"))
    raw_checker = params.required("healthChecker")
    checker = HealthChecker.from_json(parse_json(raw_checker, "healthChecker"))
    return service, ClusterConfig(
        name=name,
        health_checker=checker,
        check_port=check_port_value,
        use_instance_port=use_instance_port,
        metadata=parse_metadata(params.raw("metadata")),
    )


def strip_group(grouped: str) -> str:
    return grouped.split(GROUP_SEPARATOR, 1)[1] if GROUP_SEPARATOR in grouped else grouped
