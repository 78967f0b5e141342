"""Changes: the deterministic state transitions of the registry's stored values.

An operation does not read a value, modify it and write it back (two writers would lose an
update); it submits a :class:`Change` and the consistency layer applies it atomically to the
current value: Distro under the key's lock on the owner, Raft inside ``apply`` on every member.
So ``apply`` is a pure function of (current value, change): no clock, no randomness, no I/O.
A change that cannot apply raises a :class:`~lib.errors.NamingError` and leaves the value as
it was, on every node alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, ClassVar, cast

from lib.errors import Conflict, InvalidParam, NotFound
from naming.codec import (
    EMPTY_INSTANCES,
    InstanceSet,
    Value,
    decode_instance,
    encode_instance,
)
from naming.domain import (
    ClusterConfig,
    HealthChecker,
    IdGenerator,
    Instance,
    InstanceKey,
    Namespace,
    Selector,
    ServiceMeta,
    Switches,
    apply_switch,
    freeze_metadata,
    simple_instance_id,
)


class Change:
    """Base class; subclasses are frozen dataclasses registered by ``type_name``."""

    type_name: ClassVar[str]
    registry: ClassVar[dict[str, type[Change]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:  # not an abstract intermediate class
            Change.registry[cls.type_name] = cls

    def apply(self, current: Value | None) -> Value | None:
        raise NotImplementedError

    def encode(self) -> dict[str, Any]:
        return {"type": self.type_name, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Change:
        return Change.registry[data["type"]]._from_fields(data)

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        raise NotImplementedError


def _instances(current: Value | None) -> dict[InstanceKey, Instance]:
    if current is None:
        return {}
    assert isinstance(current, Mapping)
    if isinstance(current, MappingProxyType):
        return cast("dict[InstanceKey, Instance]", current.copy())  # a C-level dict copy
    return cast("dict[InstanceKey, Instance]", dict(current))


def _frozen(instances: dict[InstanceKey, Instance]) -> InstanceSet:
    return MappingProxyType(instances) if instances else EMPTY_INSTANCES


def _next_snowflake_id(instances: dict[InstanceKey, Instance]) -> str:
    used = {i.instance_id for i in instances.values()}
    n = 0
    while str(n) in used:
        n += 1
    return str(n)


@dataclass(frozen=True, slots=True)
class UpsertInstance(Change):
    """Register (or PY-style PUT): add or replace by (cluster, ip, port).

    As in Nacos ``Cluster.updateIps``, an instance that already exists keeps its instance id and
    its health flag unless the new one is ``marked``; it also keeps its registration time (a
    re-register or a PUT is not a new registration). Its lease is the new one's: a client that
    re-registers after a reconnect moves it to its new connection, and a v1 register clears it
    (the instance is beat-based again). ``registered_ms`` is the operation's wall
    clock, read before the change was submitted, so every member applies the same value; it is
    set in the one ``replace`` apply makes anyway (no extra copy on the register path).
    """

    type_name: ClassVar[str] = "upsert_instance"
    instance: Instance
    grouped_service: str
    registered_ms: int = 0  # 0 in changes logged before registration times were kept

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        new = self.instance
        old = instances.get(new.key)
        if old is not None:
            changes: dict[str, Any] = {
                "instance_id": old.instance_id,
                "registered_ms": old.registered_ms,
            }
            if not new.marked:
                changes["healthy"] = old.healthy
            new = replace(new, **changes)
        elif new.id_generator == IdGenerator.SNOWFLAKE:
            new = replace(
                new,
                instance_id=_next_snowflake_id(instances),
                registered_ms=self.registered_ms,
            )
        else:
            new = replace(
                new,
                instance_id=simple_instance_id(new.ip, new.port, new.cluster, self.grouped_service),
                registered_ms=self.registered_ms,
            )
        instances[new.key] = new
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {
            "instance": encode_instance(self.instance),
            "service": self.grouped_service,
            "registeredMs": self.registered_ms,
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            decode_instance(data["instance"]),
            str(data["service"]),
            int(data.get("registeredMs", 0)),
        )


@dataclass(frozen=True, slots=True)
class UpdateInstance(Change):
    """Strict update (PUT from a Java ≥ 1.0 client): the instance must exist."""

    type_name: ClassVar[str] = "update_instance"
    instance: Instance

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        old = instances.get(self.instance.key)
        if old is None:
            raise InvalidParam(
                f"instance not exist: {self.instance.ip}:{self.instance.port} "
                f"in cluster {self.instance.cluster}"
            )
        # An edit is not a registration: the instance keeps its lease (and so its life).
        new = replace(
            self.instance,
            instance_id=old.instance_id,
            registered_ms=old.registered_ms,
            lease=old.lease,
        )
        if not new.marked:
            new = replace(new, healthy=old.healthy)
        instances[new.key] = new
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {"instance": encode_instance(self.instance)}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(decode_instance(data["instance"]))


@dataclass(frozen=True, slots=True)
class PatchInstance(Change):
    """PATCH /instance: apply only the fields that were given."""

    type_name: ClassVar[str] = "patch_instance"
    key: InstanceKey
    weight: float | None = None
    healthy: bool | None = None
    enabled: bool | None = None
    metadata: Mapping[str, str] | None = None
    app: str | None = None

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        old = instances.get(self.key)
        if old is None:
            raise NotFound("instance not found")
        changes = {
            name: getattr(self, name)
            for name in ("weight", "healthy", "enabled", "metadata", "app")
            if getattr(self, name) is not None
        }
        instances[self.key] = replace(old, **changes)
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {
            "key": list(self.key),
            "weight": self.weight,
            "healthy": self.healthy,
            "enabled": self.enabled,
            "metadata": None if self.metadata is None else dict(self.metadata),
            "app": self.app,
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        metadata = data.get("metadata")
        return cls(
            InstanceKey(*data["key"]),
            weight=data.get("weight"),
            healthy=data.get("healthy"),
            enabled=data.get("enabled"),
            metadata=None if metadata is None else freeze_metadata(metadata),
            app=data.get("app"),
        )


@dataclass(frozen=True, slots=True)
class RemoveInstances(Change):
    """Deregister or expire; absent keys are a no-op (Nacos answers ``ok`` either way)."""

    type_name: ClassVar[str] = "remove_instances"
    keys: tuple[InstanceKey, ...]

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        for key in self.keys:
            instances.pop(key, None)
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {"keys": [list(k) for k in self.keys]}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(tuple(InstanceKey(*k) for k in data["keys"]))


@dataclass(frozen=True, slots=True)
class RemoveLeased(Change):
    """Release connection-bound instances (``naming.leases``): each is removed only while it
    still carries the given lease. A client that re-registered meanwhile, through another
    connection or member (a new lease) or as a v1 instance (no lease), is kept, so a late
    release from the member that held its old connection cannot take it away. An empty lease
    matches nothing: a beat-based instance is never released this way."""

    type_name: ClassVar[str] = "remove_leased"
    entries: tuple[tuple[InstanceKey, str], ...]

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        for key, lease in self.entries:
            old = instances.get(key)
            if old is not None and lease and old.lease == lease:
                del instances[key]
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {"entries": [[list(k), lease] for k, lease in self.entries]}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(tuple((InstanceKey(*k), str(lease)) for k, lease in data["entries"]))


@dataclass(frozen=True, slots=True)
class SetHealth(Change):
    """Health verdicts from beat expiry, active checks or PUT /health; only real changes apply."""

    type_name: ClassVar[str] = "set_health"
    verdicts: tuple[tuple[InstanceKey, bool], ...]

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        for key, healthy in self.verdicts:
            old = instances.get(key)
            if old is not None and old.healthy != healthy:
                instances[key] = replace(old, healthy=healthy)
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {"verdicts": [[list(k), h] for k, h in self.verdicts]}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(tuple((InstanceKey(*k), bool(h)) for k, h in data["verdicts"]))


@dataclass(frozen=True, slots=True)
class UpdateMetadata(Change):
    """PUT/DELETE /instance/metadata/batch; ``keys=None`` means every instance of the list."""

    type_name: ClassVar[str] = "update_metadata"
    keys: tuple[InstanceKey, ...] | None
    metadata: Mapping[str, str]
    delete: bool

    def apply(self, current: Value | None) -> Value | None:
        instances = _instances(current)
        targets = list(instances) if self.keys is None else [k for k in self.keys if k in instances]
        for key in targets:
            old = instances[key]
            merged = dict(old.metadata)
            if self.delete:
                for name in self.metadata:
                    merged.pop(name, None)
            else:
                merged.update(self.metadata)
            instances[key] = replace(old, metadata=freeze_metadata(merged))
        return _frozen(instances)

    def _fields(self) -> dict[str, Any]:
        return {
            "keys": None if self.keys is None else [list(k) for k in self.keys],
            "metadata": dict(self.metadata),
            "delete": self.delete,
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        keys = data.get("keys")
        return cls(
            None if keys is None else tuple(InstanceKey(*k) for k in keys),
            freeze_metadata(data["metadata"]),
            bool(data["delete"]),
        )


@dataclass(frozen=True, slots=True)
class ClearValue(Change):
    """Remove the whole value (DELETE /service, empty-service auto-clean)."""

    type_name: ClassVar[str] = "clear"

    def apply(self, current: Value | None) -> Value | None:
        return None

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls()


def _meta(current: Value | None) -> ServiceMeta | None:
    assert current is None or isinstance(current, ServiceMeta)
    return current


def _encode_meta_fields(
    threshold: float | None, metadata: Mapping[str, str] | None, selector: Selector | None
) -> dict[str, Any]:
    return {
        "protectThreshold": threshold,
        "metadata": None if metadata is None else dict(metadata),
        "selector": None if selector is None else selector.to_json(),
    }


def _decode_selector(raw: Any) -> Selector | None:
    if raw is None:
        return None
    return Selector(type=str(raw.get("type", "none")), expression=str(raw.get("expression", "")))


@dataclass(frozen=True, slots=True)
class CreateService(Change):
    """POST /service: fails when the service's meta already exists."""

    type_name: ClassVar[str] = "create_service"
    protect_threshold: float
    metadata: Mapping[str, str]
    selector: Selector
    display_name: str

    def apply(self, current: Value | None) -> Value | None:
        if _meta(current) is not None:
            raise Conflict(f"specified service already exists, serviceName : {self.display_name}")
        return ServiceMeta(self.protect_threshold, self.metadata, self.selector)

    def _fields(self) -> dict[str, Any]:
        fields = _encode_meta_fields(self.protect_threshold, self.metadata, self.selector)
        return {**fields, "name": self.display_name}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            float(data["protectThreshold"]),
            freeze_metadata(data["metadata"]),
            _decode_selector(data["selector"]) or Selector(),
            str(data["name"]),
        )


@dataclass(frozen=True, slots=True)
class EnsureService(Change):
    """Create default meta when missing (a persistent registration creates its service)."""

    type_name: ClassVar[str] = "ensure_service"

    def apply(self, current: Value | None) -> Value | None:
        return _meta(current) or ServiceMeta()

    def _fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls()


@dataclass(frozen=True, slots=True)
class UpdateService(Change):
    """PUT /service: threshold required; metadata and selector replaced (None keeps them).

    ``create`` lets a service that so far lived only through ephemeral instances get its meta.
    """

    type_name: ClassVar[str] = "update_service"
    protect_threshold: float
    metadata: Mapping[str, str] | None
    selector: Selector | None
    create: bool

    def apply(self, current: Value | None) -> Value | None:
        meta = _meta(current)
        if meta is None:
            if not self.create:
                raise NotFound("service not found!")
            meta = ServiceMeta()
        return replace(
            meta,
            protect_threshold=self.protect_threshold,
            metadata=meta.metadata if self.metadata is None else self.metadata,
            selector=meta.selector if self.selector is None else self.selector,
        )

    def _fields(self) -> dict[str, Any]:
        fields = _encode_meta_fields(self.protect_threshold, self.metadata, self.selector)
        return {**fields, "create": self.create}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        metadata = data.get("metadata")
        return cls(
            float(data["protectThreshold"]),
            None if metadata is None else freeze_metadata(metadata),
            _decode_selector(data.get("selector")),
            bool(data["create"]),
        )


@dataclass(frozen=True, slots=True)
class UpsertCluster(Change):
    """PUT /cluster: create or replace one cluster's config (creating the meta if needed)."""

    type_name: ClassVar[str] = "upsert_cluster"
    config: ClusterConfig

    def apply(self, current: Value | None) -> Value | None:
        meta = _meta(current) or ServiceMeta()
        clusters = dict(meta.clusters)
        clusters[self.config.name] = self.config
        return replace(meta, clusters=MappingProxyType(clusters))

    def _fields(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": c.name,
            "healthChecker": c.health_checker.to_json(),
            "checkPort": c.check_port,
            "useInstancePort": c.use_instance_port,
            "metadata": dict(c.metadata),
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            ClusterConfig(
                name=str(data["name"]),
                health_checker=HealthChecker.from_json(data["healthChecker"]),
                check_port=int(data["checkPort"]),
                use_instance_port=bool(data["useInstancePort"]),
                metadata=freeze_metadata(data["metadata"]),
            )
        )


@dataclass(frozen=True, slots=True)
class PinLeader(Change):
    """PUT /service/leader: pin ``address`` ("ip:port") as the leader of ``scope`` ("" for the
    service, else a cluster; ``naming.leaders``). Creates the meta of a service that so far
    lived only through ephemeral instances. The operation checked that the instance exists
    when the pin was asked for; apply does not (it sees only the meta), and a pin may outlive
    its instance: it waits for it to come back."""

    type_name: ClassVar[str] = "pin_leader"
    scope: str
    address: str

    def apply(self, current: Value | None) -> Value | None:
        meta = _meta(current) or ServiceMeta()
        if meta.pinned_leaders.get(self.scope) == self.address:
            return meta
        pins = {**meta.pinned_leaders, self.scope: self.address}
        return replace(meta, pinned_leaders=MappingProxyType(pins))

    def _fields(self) -> dict[str, Any]:
        return {"scope": self.scope, "address": self.address}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(str(data["scope"]), str(data["address"]))


@dataclass(frozen=True, slots=True)
class UnpinLeader(Change):
    """DELETE /service/leader: drop the pin of ``scope``; none there (or no meta) is a no-op."""

    type_name: ClassVar[str] = "unpin_leader"
    scope: str

    def apply(self, current: Value | None) -> Value | None:
        meta = _meta(current)
        if meta is None or self.scope not in meta.pinned_leaders:
            return meta
        pins = {k: v for k, v in meta.pinned_leaders.items() if k != self.scope}
        return replace(meta, pinned_leaders=MappingProxyType(pins))

    def _fields(self) -> dict[str, Any]:
        return {"scope": self.scope}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(str(data["scope"]))


@dataclass(frozen=True, slots=True)
class SetSwitch(Change):
    type_name: ClassVar[str] = "set_switch"
    entry: str
    value: str

    def apply(self, current: Value | None) -> Value | None:
        assert current is None or isinstance(current, Switches)
        return apply_switch(current or Switches(), self.entry, self.value)

    def _fields(self) -> dict[str, Any]:
        return {"entry": self.entry, "value": self.value}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(str(data["entry"]), str(data["value"]))


# -- namespaces ---------------------------------------------------------------------------------


def _namespaces(current: Value | None) -> dict[str, Namespace]:
    if current is None:
        return {}
    assert isinstance(current, Mapping)
    return cast("dict[str, Namespace]", dict(current))


@dataclass(frozen=True, slots=True)
class CreateNamespace(Change):
    """The id is chosen (or generated) before the change: apply draws no random numbers."""

    type_name: ClassVar[str] = "create_namespace"
    namespace: Namespace

    def apply(self, current: Value | None) -> Value | None:
        namespaces = _namespaces(current)
        if self.namespace.id in namespaces:
            raise Conflict("namespaceId already exist")
        namespaces[self.namespace.id] = self.namespace
        return MappingProxyType(namespaces)

    def _fields(self) -> dict[str, Any]:
        ns = self.namespace
        return {"id": ns.id, "name": ns.name, "description": ns.description}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(Namespace(str(data["id"]), str(data["name"]), str(data["description"])))


@dataclass(frozen=True, slots=True)
class UpdateNamespace(CreateNamespace):
    type_name: ClassVar[str] = "update_namespace"

    def apply(self, current: Value | None) -> Value | None:
        namespaces = _namespaces(current)
        if self.namespace.id not in namespaces:
            raise NotFound(f"namespaceId [ {self.namespace.id} ] not exist")
        namespaces[self.namespace.id] = self.namespace
        return MappingProxyType(namespaces)


@dataclass(frozen=True, slots=True)
class DeleteNamespace(Change):
    type_name: ClassVar[str] = "delete_namespace"
    namespace_id: str

    def apply(self, current: Value | None) -> Value | None:
        namespaces = _namespaces(current)
        if namespaces.pop(self.namespace_id, None) is None:
            raise NotFound(f"namespaceId [ {self.namespace_id} ] not exist")
        return MappingProxyType(namespaces)

    def _fields(self) -> dict[str, Any]:
        return {"id": self.namespace_id}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(str(data["id"]))
