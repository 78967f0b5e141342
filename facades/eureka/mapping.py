"""Eureka's model onto ours and back (``shared/facades.md`` §4.5, the issue's common notes).

- namespace ``public``, group ``DEFAULT_GROUP``: Nacos clients see Eureka apps and Eureka clients
  see the Nacos services of that group;
- service = the app name upper-cased (Eureka upper-cases it on both sides); Nacos services are
  found case-insensitively and shown upper-cased;
- cluster = ``metadata.zone`` when it is a valid cluster name, else ``DEFAULT``;
- ephemeral; native id = ``instanceId``, else ``hostName`` (eureka-js-client sends no id);
- status: UP → healthy and enabled; OUT_OF_SERVICE → enabled=false (hidden as a disabled
  instance is); DOWN, STARTING, UNKNOWN → healthy=false;
- leases: heartbeat interval = ``renewalIntervalInSecs`` (30), unhealthy after
  ``durationInSecs`` (90), removed after 2 x ``durationInSecs`` (180, Eureka's real expiry).

What only Eureka has is kept in metadata under ``eureka.`` (:class:`Key`), so nothing a client
sent is lost, Nacos clients can read it, and a Eureka reader gets its instance back as sent.
Those keys and ``preserved.*`` are not shown to Eureka readers as metadata.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from facades.eureka.wire import bool_of, int_of, text_of
from lib.errors import InvalidParam
from naming.domain import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    GROUP_SEPARATOR,
    MAX_METADATA_CHARS,
    Instance,
    PreservedKey,
    ServiceName,
    check_cluster_name,
    check_grouped_name,
    check_ip,
    check_port,
    freeze_metadata,
)
from naming.registry import ServiceView

NAMESPACE = DEFAULT_NAMESPACE
GROUP = DEFAULT_GROUP
SOURCE_KEY = "preserved.source"
SOURCE = "eureka"
PREFIX = "eureka."
MAX_USER_METADATA = 64  # leaves room for the eureka.* and preserved.* keys (128 in all)
DEFAULT_RENEWAL_S = 30
DEFAULT_DURATION_S = 90
MAX_LEASE_S = 24 * 3600
DEFAULT_DATA_CENTER = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
EMPTY_MAP = {"@class": "java.util.Collections$EmptyMap"}


class Key(StrEnum):
    """The metadata keys an instance registered through Eureka carries (besides its own
    metadata, ``preserved.source=eureka`` and the three ``preserved.*`` timings)."""

    HOST_NAME = "eureka.hostName"
    STATUS = "eureka.status"  # the effective status (§4.2)
    OVERRIDDEN = "eureka.overriddenStatus"  # the stored override, UNKNOWN when none
    PORT = "eureka.port"
    PORT_ENABLED = "eureka.port.enabled"
    SECURE_PORT = "eureka.securePort"
    SECURE_PORT_ENABLED = "eureka.securePort.enabled"
    VIP = "eureka.vipAddress"
    SECURE_VIP = "eureka.secureVipAddress"
    HOME_PAGE = "eureka.homePageUrl"
    STATUS_PAGE = "eureka.statusPageUrl"
    HEALTH_CHECK = "eureka.healthCheckUrl"
    SECURE_HEALTH_CHECK = "eureka.secureHealthCheckUrl"
    DATA_CENTER_CLASS = "eureka.dataCenterInfo.class"
    DATA_CENTER_NAME = "eureka.dataCenterInfo.name"
    COUNTRY_ID = "eureka.countryId"
    LAST_DIRTY = "eureka.lastDirtyTimestamp"
    LAST_UPDATED = "eureka.lastUpdatedTimestamp"


class Status(StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def of(cls, raw: Any) -> Status:
        """Eureka's ``InstanceStatus.toEnum``: unknown strings read as UNKNOWN."""
        try:
            return cls(text_of(raw).upper())
        except ValueError:
            return cls.UNKNOWN


def is_eureka(inst: Instance) -> bool:
    return inst.metadata.get(SOURCE_KEY) == SOURCE


def service_of(app: str) -> ServiceName:
    """The service an app name writes to; 400 for a name our services cannot have."""
    grouped = f"{GROUP}{GROUP_SEPARATOR}{app.strip().upper()}"
    check_grouped_name(grouped)
    return ServiceName(NAMESPACE, grouped)


def app_of(view: ServiceView) -> str:
    return view.name.name.upper()


def eureka_views(views: Iterable[ServiceView]) -> list[ServiceView]:
    """The services Eureka readers see: the mapped namespace and group."""
    return [
        v for v in views if v.name.namespace == NAMESPACE and v.name.group == GROUP and v.exists
    ]


# -- status ---------------------------------------------------------------------------------------


def health_of(status: Status) -> tuple[bool, bool]:
    """(healthy, enabled) for an effective status."""
    if status is Status.OUT_OF_SERVICE:
        return True, False
    return status is Status.UP, True


def effective_status(reported: Status, override: Status, existing: Status | None) -> Status:
    """Eureka's rules on register and renew (``shared/facades.md`` §4.2), first match wins:
    a reported status other than UP/OUT_OF_SERVICE; a stored override; the existing lease's
    UP/OUT_OF_SERVICE; the reported status."""
    if reported not in (Status.UP, Status.OUT_OF_SERVICE):
        return reported
    if override is not Status.UNKNOWN:
        return override
    if existing in (Status.UP, Status.OUT_OF_SERVICE):
        return existing
    return reported


def stored_status(inst: Instance) -> Status:
    return Status.of(inst.metadata.get(Key.STATUS, ""))


def stored_override(inst: Instance) -> Status:
    return Status.of(inst.metadata.get(Key.OVERRIDDEN, ""))


def shown_status(inst: Instance) -> Status:
    """What a Eureka reader sees. A Eureka instance: its status, OUT_OF_SERVICE when disabled
    (by an operator through Nacos too); a lapsed lease stays as it was (Eureka has no such
    state; it is removed at 2 x duration). A Nacos instance: UP when healthy and enabled,
    OUT_OF_SERVICE when disabled, DOWN otherwise."""
    if not inst.enabled:
        return Status.OUT_OF_SERVICE
    if is_eureka(inst):
        return stored_status(inst)
    return Status.UP if inst.healthy else Status.DOWN


def apps_hashcode(statuses: Iterable[Status]) -> str:
    """``Applications.getReconcileHashCode``: ``STATUS_count_`` per status present, sorted."""
    counts = Counter(str(s) for s in statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


# -- registration ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    service: ServiceName
    instance: Instance  # with the reported status' health; the edge applies the rules
    native_id: str
    reported: Status
    body_override: Status
    last_dirty_ms: int


def _require(tree: Mapping[str, Any], name: str, message: str) -> str:
    value = text_of(tree.get(name))
    if not value:
        raise InvalidParam(message)
    return value


def _user_metadata(raw: Any) -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise InvalidParam("metadata must be a map")
    found = {
        str(k): text_of(v)
        for k, v in raw.items()
        if not str(k).startswith(("@", "$", PREFIX, "preserved."))
    }
    if len(found) > MAX_USER_METADATA:
        raise InvalidParam(f"metadata has {len(found)} entries, at most {MAX_USER_METADATA}")
    if sum(len(k) + len(v) for k, v in found.items()) > MAX_METADATA_CHARS:
        raise InvalidParam(f"metadata over {MAX_METADATA_CHARS} characters")
    return found


def _seconds(lease: Any, name: str, default: int) -> int:
    value = int_of(lease.get(name) if isinstance(lease, dict) else None, name, 0)
    if value <= 0:
        return default
    return min(value, MAX_LEASE_S)


def parse_registration(path_app: str, tree: Mapping[str, Any]) -> Registration:
    """Eureka's checks on register (``ApplicationResource.addInstance``), in its order and with
    its reasons, then the mapping. Raises InvalidParam (400) with the reason."""
    host_name = text_of(tree.get("hostName"))
    native_id = text_of(tree.get("instanceId")) or host_name
    if not native_id:
        raise InvalidParam("Missing instanceId")
    if not host_name:
        raise InvalidParam("Missing hostname")
    ip = _require(tree, "ipAddr", "Missing ip address")
    app = _require(tree, "app", "Missing appName")
    if app.upper() != path_app.upper():
        raise InvalidParam(
            f"Mismatched appName, expecting {path_app.upper()} but was {app.upper()}"
        )
    data_center = tree.get("dataCenterInfo")
    if not isinstance(data_center, dict):
        raise InvalidParam("Missing dataCenterInfo")
    data_center_name = text_of(data_center.get("name"))
    if not data_center_name:
        raise InvalidParam("Missing dataCenterInfo Name")
    if len(native_id) > 256 or len(host_name) > 256:
        raise InvalidParam("instanceId and hostName are at most 256 characters")
    check_ip(ip)
    service = service_of(app)

    port_tree, secure_tree = tree.get("port"), tree.get("securePort")
    port = int_of(port_tree, "port", 7001)
    port_enabled = bool_of(port_tree.get("@enabled") if isinstance(port_tree, dict) else None, True)
    secure_port = int_of(secure_tree, "securePort", 7002)
    secure_enabled = bool_of(
        secure_tree.get("@enabled") if isinstance(secure_tree, dict) else None, False
    )
    check_port(port, allow_zero=True)
    check_port(secure_port, allow_zero=True)
    served_port = port if port_enabled or not secure_enabled else secure_port
    check_port(served_port)

    metadata = _user_metadata(tree.get("metadata"))
    zone = metadata.get("zone", "")
    try:
        cluster = check_cluster_name(zone) if zone else DEFAULT_CLUSTER
    except InvalidParam:
        cluster = DEFAULT_CLUSTER
    lease = tree.get("leaseInfo")
    renewal_s = _seconds(lease, "renewalIntervalInSecs", DEFAULT_RENEWAL_S)
    duration_s = _seconds(lease, "durationInSecs", DEFAULT_DURATION_S)
    now_ms = int(time.time() * 1000)
    last_dirty = int_of(tree.get("lastDirtyTimestamp"), "lastDirtyTimestamp", 0) or now_ms
    last_updated = int_of(tree.get("lastUpdatedTimestamp"), "lastUpdatedTimestamp", 0) or now_ms
    reported = Status.of(tree.get("status") or "UP")
    body_override = Status.of(tree.get("overriddenStatus") or tree.get("overriddenstatus"))
    texts = {
        Key.HOST_NAME: host_name,
        Key.PORT: str(port),
        Key.PORT_ENABLED: "true" if port_enabled else "false",
        Key.SECURE_PORT: str(secure_port),
        Key.SECURE_PORT_ENABLED: "true" if secure_enabled else "false",
        Key.VIP: text_of(tree.get("vipAddress")),
        Key.SECURE_VIP: text_of(tree.get("secureVipAddress")),
        Key.HOME_PAGE: text_of(tree.get("homePageUrl")),
        Key.STATUS_PAGE: text_of(tree.get("statusPageUrl")),
        Key.HEALTH_CHECK: text_of(tree.get("healthCheckUrl")),
        Key.SECURE_HEALTH_CHECK: text_of(tree.get("secureHealthCheckUrl")),
        Key.DATA_CENTER_CLASS: text_of(data_center.get("@class")) or DEFAULT_DATA_CENTER,
        Key.DATA_CENTER_NAME: data_center_name,
        Key.COUNTRY_ID: str(int_of(tree.get("countryId"), "countryId", 1)),
        Key.LAST_DIRTY: str(last_dirty),
        Key.LAST_UPDATED: str(last_updated),
        Key.STATUS: str(reported),
        Key.OVERRIDDEN: str(Status.UNKNOWN),
    }
    if sum(len(v) for v in texts.values()) > MAX_METADATA_CHARS:
        raise InvalidParam("the instance's URLs and addresses are too long")
    # Empty fields are left out (rendered back as ""): Nacos readers see only what was sent.
    stored: dict[str, str] = {**metadata, **{str(k): v for k, v in texts.items() if v}}
    stored[SOURCE_KEY] = SOURCE
    stored[PreservedKey.HEART_BEAT_INTERVAL] = str(renewal_s * 1000)
    stored[PreservedKey.HEART_BEAT_TIMEOUT] = str(duration_s * 1000)
    stored[PreservedKey.IP_DELETE_TIMEOUT] = str(2 * duration_s * 1000)
    healthy, enabled = health_of(reported)
    instance = Instance(
        ip=ip,
        port=served_port,
        cluster=cluster,
        healthy=healthy,
        enabled=enabled,
        ephemeral=True,
        metadata=freeze_metadata(stored),
        native_id=native_id,
    )
    return Registration(service, instance, native_id, reported, body_override, last_dirty)


def with_status(inst: Instance, status: Status, override: Status | None = None) -> Instance:
    """The instance with an effective status (and override) applied: health, enabled, keys."""
    metadata = dict(inst.metadata)
    metadata[Key.STATUS] = str(status)
    if override is not None:
        metadata[Key.OVERRIDDEN] = str(override)
    healthy, enabled = health_of(status)
    return inst.with_changes(healthy=healthy, enabled=enabled, metadata=freeze_metadata(metadata))


def user_metadata_update(inst: Instance, values: Mapping[str, str]) -> Mapping[str, str]:
    """The instance's metadata with a Eureka metadata update merged in (reserved keys are not
    the client's to set)."""
    merged = dict(inst.metadata)
    merged.update(_user_metadata(dict(values)))
    return freeze_metadata(merged)


# -- rendering ------------------------------------------------------------------------------------


def _port(number: int, enabled: bool) -> dict[str, Any]:
    return {"$": number, "@enabled": "true" if enabled else "false"}


def millis(raw: str | None) -> int | None:
    """A timestamp (or another count) as Eureka writes it: ASCII digits, at most 18 of them (so
    always a Java long); None for anything else. ``str.isdigit`` alone would also pass ``"²"``,
    which ``int`` refuses, and digits past what a Java client can read back."""
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def _ms(metadata: Mapping[str, str], key: str, default: int) -> int:
    found = millis(metadata.get(key))
    return default if found is None else found


def render_instance(
    inst: Instance, app: str, vip: str, action: str | None = None
) -> dict[str, Any]:
    """One ``instance`` as Eureka writes it (JSON-shaped; ``wire.to_xml`` makes the XML)."""
    md = inst.metadata
    eureka = is_eureka(inst)
    registered = inst.registered_ms
    if eureka:
        instance_id = inst.native_id
        host = md.get(Key.HOST_NAME, inst.ip)
        port = _port(_ms(md, Key.PORT, inst.port), md.get(Key.PORT_ENABLED, "true") == "true")
        secure = _port(
            _ms(md, Key.SECURE_PORT, 443), md.get(Key.SECURE_PORT_ENABLED, "false") == "true"
        )
        override = stored_override(inst)
        country = _ms(md, Key.COUNTRY_ID, 1)
        data_center = {
            "@class": md.get(Key.DATA_CENTER_CLASS, DEFAULT_DATA_CENTER),
            "name": md.get(Key.DATA_CENTER_NAME, "MyOwn"),
        }
        urls = {
            "homePageUrl": md.get(Key.HOME_PAGE, ""),
            "statusPageUrl": md.get(Key.STATUS_PAGE, ""),
            "healthCheckUrl": md.get(Key.HEALTH_CHECK, ""),
            "secureHealthCheckUrl": md.get(Key.SECURE_HEALTH_CHECK, ""),
            "vipAddress": md.get(Key.VIP, ""),
            "secureVipAddress": md.get(Key.SECURE_VIP, ""),
        }
        updated = _ms(md, Key.LAST_UPDATED, registered)
        dirty = _ms(md, Key.LAST_DIRTY, registered)
        shown = {k: v for k, v in md.items() if not k.startswith((PREFIX, "preserved."))}
    else:
        instance_id = host = f"{inst.ip}:{inst.port}"
        port, secure = _port(inst.port, True), _port(443, False)
        override, country = Status.UNKNOWN, 1
        data_center = {"@class": DEFAULT_DATA_CENTER, "name": "MyOwn"}
        urls = {
            "homePageUrl": f"http://{inst.ip}:{inst.port}/",
            "statusPageUrl": "",
            "healthCheckUrl": "",
            "secureHealthCheckUrl": "",
            "vipAddress": vip,
            "secureVipAddress": vip,
        }
        updated = dirty = registered
        shown = dict(md)
    out: dict[str, Any] = {
        "instanceId": instance_id,
        "hostName": host,
        "app": app,
        "ipAddr": inst.ip,
        "status": str(shown_status(inst)),
        "overriddenStatus": str(override),
        "port": port,
        "securePort": secure,
        "countryId": country,
        "dataCenterInfo": data_center,
        "leaseInfo": {
            "renewalIntervalInSecs": inst.heartbeat_interval_ms // 1000,
            "durationInSecs": inst.heartbeat_timeout_ms // 1000,
            "registrationTimestamp": registered,
            "lastRenewalTimestamp": updated,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": registered,
        },
        "metadata": shown or dict(EMPTY_MAP),
        **urls,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": str(updated),
        "lastDirtyTimestamp": str(dirty),
    }
    if action is not None:
        out["actionType"] = action
    return out


def vips_of(inst: Instance, view: ServiceView, secure: bool) -> list[str]:
    """The VIP addresses an instance answers to (comma-separated in Eureka), lower-cased."""
    if is_eureka(inst):
        raw = inst.metadata.get(Key.SECURE_VIP if secure else Key.VIP, "")
    else:
        raw = view.name.name
    return [v.strip().lower() for v in raw.split(",") if v.strip()]
