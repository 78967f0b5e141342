"""airlift announcements (JSON) → checked values → instances of our model, and back.

The mapping (``../shared/facades.md`` §2.3): namespace ``public``, service = the announcement's
``type``, group = its ``pool``, cluster ``DEFAULT``; the service UUID is the instance's native
id, so two announcements on one ip:port stay two instances. ip and port come from the ``http``
property (else ``https``); an announcement with neither still has to be kept, so it gets the
announcing client's address and port 0 (the core takes port 0; no Nacos client can write to
it, and the native id keeps such instances apart).

What airlift sends comes back exactly: the id, node id, location and pool in ``airlift.*``
metadata, each property under ``airlift.property.<name>`` (prefixed, so a property can never
pose as a lease setting or as our own keys), and ``preserved.source = airlift``.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lib.errors import InvalidParam
from naming.domain import (
    DEFAULT_CLUSTER,
    DEFAULT_NAMESPACE,
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    Instance,
    PreservedKey,
    ServiceName,
    check_ip,
    fold_service_name,
    freeze_metadata,
)
from naming.parsing import parse_json

NAMESPACE = DEFAULT_NAMESPACE

SOURCE = "preserved.source"
SOURCE_AIRLIFT = "airlift"
ID = "airlift.id"
NODE_ID = "airlift.nodeId"
LOCATION = "airlift.location"
POOL = "airlift.pool"
PROPERTY = "airlift.property."

# Bounds no real client comes near (a Trino node announces 2 services of ~6 properties, a
# Presto C++ worker 1): one request cannot bloat every replica.
MAX_BODY_BYTES = 256 * 1024
MAX_SERVICES = 64
MAX_PROPERTIES = MAX_METADATA_ENTRIES - 8  # room for the airlift.* and preserved.* keys
MAX_TEXT = 1024  # a location, a type, a pool, a node id

# airlift's NodeConfig rule for node ids; a UUID (the default) matches it.
_NODE_ID_RE = re.compile(r"[A-Za-z0-9][_A-Za-z0-9-]*")
# The canonical text of a UUID only: java.util.UUID reads it, and it is what we store.
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


class EnvironmentMismatch(InvalidParam):
    """airlift's own 400 and text, nothing stored."""

    def __init__(self, expected: str, provided: str) -> None:
        super().__init__(f"Environment mismatch. Expected: {expected}, Provided: {provided}")


@dataclass(frozen=True, slots=True)
class ServiceAnnouncement:
    id: str
    type: str
    properties: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DynamicAnnouncement:
    """``PUT /v1/announcement/{node_id}``: the node's whole service list."""

    environment: str
    pool: str
    location: str
    services: tuple[ServiceAnnouncement, ...]


@dataclass(frozen=True, slots=True)
class StaticAnnouncement:
    """``POST /v1/announcement/static``: one service, kept until it is deleted."""

    environment: str
    type: str
    pool: str
    location: str | None
    properties: Mapping[str, str]


# -- parsing -----------------------------------------------------------------------------------


def check_node_id(raw: str) -> str:
    if len(raw) > MAX_TEXT or not _NODE_ID_RE.fullmatch(raw):
        raise InvalidParam(f"invalid node id (airlift's [A-Za-z0-9][_A-Za-z0-9-]*): {raw[:100]}")
    return raw


def check_uuid(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not _UUID_RE.fullmatch(raw):
        shown = raw[:100] if isinstance(raw, str) else type(raw).__name__
        raise InvalidParam(f"{what} must be a UUID: {shown}")
    return str(uuid.UUID(raw))


def parse_dynamic(body: bytes, environment: str, node_id: str) -> DynamicAnnouncement:
    data = _object(body, "announcement")
    _check_environment(data, environment)
    pool = _name(data.get("pool"), "pool")
    location = _location(data.get("location"), f"/somewhere/{node_id}")
    raw_services = data.get("services")
    if not isinstance(raw_services, list):
        raise InvalidParam("services is required: a list of {id, type, properties}")
    if not raw_services:
        raise InvalidParam("an announcement needs at least one service")
    if len(raw_services) > MAX_SERVICES:
        raise InvalidParam(f"at most {MAX_SERVICES} services in one announcement")
    services = []
    seen: set[tuple[str, str]] = set()
    for item in raw_services:
        if not isinstance(item, dict):
            raise InvalidParam("each service must be an object {id, type, properties}")
        service = ServiceAnnouncement(
            check_uuid(item.get("id"), "service id"),
            _name(item.get("type"), "service type"),
            _properties(item.get("properties")),
        )
        fold_service_name(service.type, pool)  # the core's name rules, checked before storing
        if (service.type, service.id) in seen:
            raise InvalidParam(f"service id {service.id} is listed twice for {service.type}")
        seen.add((service.type, service.id))
        services.append(service)
    return DynamicAnnouncement(environment, pool, location, tuple(services))


def parse_static(body: bytes, environment: str) -> StaticAnnouncement:
    data = _object(body, "static announcement")
    _check_environment(data, environment)
    pool = _name(data.get("pool"), "pool")
    kind = _name(data.get("type"), "type")
    fold_service_name(kind, pool)
    raw_location = data.get("location")
    location = None if raw_location is None else _location(raw_location, "")
    properties = _properties(data.get("properties"))
    return StaticAnnouncement(environment, kind, pool, location, properties)


def _object(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidParam(f"{what} larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParam(f"{what} is not UTF-8") from None
    data = parse_json(text, what, MAX_BODY_BYTES)
    if not isinstance(data, dict):
        raise InvalidParam(f"{what} must be a JSON object")
    return data


def _check_environment(data: Mapping[str, Any], expected: str) -> None:
    provided = data.get("environment")
    if not isinstance(provided, str) or not provided:
        raise InvalidParam("environment is required")
    if provided != expected:
        raise EnvironmentMismatch(expected, provided[:MAX_TEXT])


def _name(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidParam(f"{what} is required (a string)")
    # "@" would let a name reach into our group@@service form.
    if len(raw) > MAX_TEXT or "@" in raw:
        raise InvalidParam(f"invalid {what}: {raw[:100]}")
    return raw


def _location(raw: Any, default: str) -> str:
    if raw is None:
        return default
    if not isinstance(raw, str) or len(raw) > MAX_TEXT:
        raise InvalidParam(f"location must be a string of at most {MAX_TEXT} characters")
    return raw


def _properties(raw: Any) -> Mapping[str, str]:
    """A string → string map; JSON scalars become strings as Java would print them (a Presto
    C++ worker sends ``"coordinator": false``)."""
    if raw is None:
        raise InvalidParam("properties is required (an object)")
    if not isinstance(raw, dict):
        raise InvalidParam("properties must be an object of strings")
    if len(raw) > MAX_PROPERTIES:
        raise InvalidParam(f"at most {MAX_PROPERTIES} properties")
    properties: dict[str, str] = {}
    for name, value in raw.items():
        if not name:
            raise InvalidParam("a property name must not be empty")
        properties[name] = _scalar(value, name)
    if sum(len(k) + len(v) for k, v in properties.items()) > MAX_METADATA_CHARS // 2:
        raise InvalidParam(f"properties longer than {MAX_METADATA_CHARS // 2} characters")
    return properties


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise InvalidParam(f"property {name[:100]} must be a string, a number or a boolean")


# -- to our model ------------------------------------------------------------------------------


def service_name(kind: str, pool: str) -> ServiceName:
    return ServiceName(NAMESPACE, fold_service_name(kind, pool))


def address_of(properties: Mapping[str, str], client: str) -> tuple[str, int]:
    """The host and port of the ``http`` URL (else ``https``); without either (or with one
    that names no host), the announcing client's address and port 0."""
    for scheme in ("http", "https"):
        url = properties.get(scheme)
        if not url:
            continue
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            continue
        if host:
            try:
                return check_ip(host), port or (443 if scheme == "https" else 80)
            except InvalidParam:
                continue  # not an address we can keep: the placeholder below
    return client, 0


def lease_metadata(max_age_s: int) -> dict[str, str]:
    """airlift has no unhealthy phase: unhealthy and removed at once, ``max_age_s`` after the
    last PUT; the client renews every 0.8 x a third of it."""
    ms = str(max_age_s * 1000)
    return {
        PreservedKey.HEART_BEAT_INTERVAL.value: str(max(1, max_age_s // 3) * 800),
        PreservedKey.HEART_BEAT_TIMEOUT.value: ms,
        PreservedKey.IP_DELETE_TIMEOUT.value: ms,
    }


def instance_of(
    service_id: str,
    pool: str,
    location: str,
    properties: Mapping[str, str],
    client: str,
    *,
    node_id: str | None,
    max_age_s: int,
) -> Instance:
    """A dynamic announcement's service (``node_id`` set: ephemeral, leased) or a static one
    (None: persistent, ``marked`` so the server never probes or expires it)."""
    ip, port = address_of(properties, client)
    metadata = {SOURCE: SOURCE_AIRLIFT, ID: service_id, LOCATION: location, POOL: pool}
    if node_id is not None:
        metadata[NODE_ID] = node_id
        metadata.update(lease_metadata(max_age_s))
    metadata.update((PROPERTY + k, v) for k, v in properties.items())
    return Instance(
        ip=ip,
        port=port,
        cluster=DEFAULT_CLUSTER,
        ephemeral=node_id is not None,
        marked=node_id is None,
        metadata=freeze_metadata(metadata),
        native_id=service_id,
    )


def is_airlift(inst: Instance) -> bool:
    return inst.metadata.get(SOURCE) == SOURCE_AIRLIFT and bool(inst.native_id)


def properties_of(inst: Instance) -> dict[str, str]:
    return {k[len(PROPERTY) :]: v for k, v in inst.metadata.items() if k.startswith(PROPERTY)}
