"""Use cases: one method per operation, taking typed commands (:mod:`naming.commands`),
returning domain values (``ServiceView``, ``Instance``, small typed results), never a protocol's
JSON: each edge renders them (Consul ``agent/discovery``: protocol-neutral results, one encoder
per API). Protocol quirks (the Java client's upsert on PUT, UDP subscription on list, ``dom``
name formats) live in the edges.

Writes go through the consistency delegate as :mod:`naming.changes`; reads come from the
registry's immutable views. No Django, no HTTP here.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from consistency.datum import DatumKey
from consistency.service import DelegateConsistencyService
from lib.errors import Conflict, InvalidParam, NotFound
from naming import audit
from naming import commands as s
from naming.changes import (
    ClearValue,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    EnsureService,
    PatchInstance,
    PinLeader,
    RemoveInstances,
    RemoveLeased,
    SetHealth,
    SetSwitch,
    UnpinLeader,
    UpdateInstance,
    UpdateMetadata,
    UpdateNamespace,
    UpdateService,
    UpsertCluster,
    UpsertInstance,
)
from naming.domain import (
    DEFAULT_NAMESPACE,
    CheckType,
    ClusterConfig,
    Instance,
    InstanceKey,
    Namespace,
    PreservedKey,
    ServiceName,
    Switches,
    apply_switch,
    check_namespace_text,
    check_new_namespace_id,
)
from naming.health import BeatTable, CheckTable
from naming.leaders import Leadership, leadership, scope_of
from naming.parsing import parse_json
from naming.registry import Registry, ServiceView


class NamespaceKind:
    PUBLIC = "public"
    CUSTOM = "custom"  # registered through the namespace API or the console
    IMPLICIT = "implicit"  # not registered: it exists because a client registered into it


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    id: str
    name: str
    description: str
    kind: str
    service_count: int
    instance_count: int
    healthy_instance_count: int


PUBLIC_NAMESPACE = Namespace(DEFAULT_NAMESPACE, "public", "Public Namespace")


class NamingOperations:
    def __init__(
        self,
        consistency: DelegateConsistencyService,
        registry: Registry,
        beats: BeatTable,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        checks: CheckTable | None = None,
    ) -> None:
        self.consistency = consistency
        self.registry = registry
        self.beats = beats
        # Last active checks, filled by the prober (``HealthServices``) on this member.
        self.checks = checks if checks is not None else CheckTable()
        self._wall_ms = wall_ms
        self.beat_count = 0  # approximate under concurrency: a metric, not an invariant

    @property
    def switches(self) -> Switches:
        return self.registry.switches

    def wall_ms(self) -> int:
        return self._wall_ms()

    def _view(self, service: ServiceName) -> ServiceView | None:
        return self.registry.get(service)

    def find_service(self, service: ServiceName) -> ServiceView | None:
        """The service's current view, or None (a query: no error for a missing service)."""
        return self.registry.get(service)

    def require_service(self, service: ServiceName, message: str | None = None) -> ServiceView:
        return self._require_view(service, message)

    def _require_view(self, service: ServiceName, message: str | None = None) -> ServiceView:
        view = self._view(service)
        if view is None:
            raise NotFound(message or f"service {service.grouped} is not found!")
        return view

    # -- instances ---------------------------------------------------------------------------

    def register_instance(self, cmd: s.RegisterInstance) -> None:
        inst = cmd.instance
        if not inst.ephemeral:
            if inst.lease:
                raise InvalidParam("only an ephemeral instance can be bound to a connection")
            view = self._view(cmd.service)
            if view is None or view.meta is None:
                # A persistent registration persists its service (Nacos writes its meta).
                self.consistency.submit(DatumKey.meta(cmd.service), EnsureService())
        # The clock is read here, before the change: apply must give every member the same value.
        self.consistency.submit(
            DatumKey.instances(cmd.service, inst.ephemeral),
            UpsertInstance(inst, cmd.service.grouped, self._wall_ms()),
        )
        if inst.ephemeral and not inst.lease:
            # One key tuple for both: the beat table and the expiry keep it (72 bytes each).
            key = inst.key
            self.beats.touch(cmd.service, key)
            self.beats.changed(cmd.service, key)

    def update_instance(self, cmd: s.RegisterInstance) -> None:
        """Strict update: the service must exist (an edge may choose to register instead)."""
        service = cmd.service
        self._require_view(
            service,
            f"service not found, namespace: {service.namespace}, service: {service.grouped}",
        )
        inst = cmd.instance
        self.consistency.submit(DatumKey.instances(service, inst.ephemeral), UpdateInstance(inst))
        if inst.ephemeral and not _leased(self._view(service), inst.key):
            key = inst.key
            self.beats.touch(service, key)
            self.beats.changed(service, key)

    def patch_instance(self, cmd: s.PatchInstanceCommand) -> None:
        view = self._require_view(cmd.service)
        found = view.find(cmd.key)
        if found is None:
            raise NotFound("instance not found")
        change = PatchInstance(cmd.key, cmd.weight, cmd.healthy, cmd.enabled, cmd.metadata, cmd.app)
        self.consistency.submit(DatumKey.instances(cmd.service, found.ephemeral), change)
        if found.ephemeral and not found.lease:
            self.beats.touch(cmd.service, cmd.key)
            self.beats.changed(cmd.service, cmd.key)

    def deregister_instance(self, ref: s.InstanceRef) -> None:
        view = self._view(ref.service)
        if view is None or view.find(ref.key, ref.ephemeral) is None:
            return  # Nacos answers ok for a missing service or instance
        self.consistency.submit(
            DatumKey.instances(ref.service, ref.ephemeral), RemoveInstances((ref.key,))
        )
        if ref.ephemeral:
            self.beats.forget(ref.service, ref.key)

    def release_leased(
        self, service: ServiceName, entries: Iterable[tuple[InstanceKey, str]]
    ) -> int:
        """Remove the service's connection-bound instances that still carry the given leases
        (a closed connection, an orphan past its grace): one change for all of them. Returns how
        many matched this member's view; none: nothing is submitted (as a deregister of what is
        not there). The owner applies only those whose lease still matches then."""
        view = self._view(service)
        if view is None:
            return 0
        found = view.ephemeral_map()
        matched = []
        for key, lease in entries:
            inst = found.get(key)
            if inst is not None and lease and inst.lease == lease:
                matched.append((key, lease))
        if matched:
            self.consistency.submit(DatumKey.instances(service, True), RemoveLeased(tuple(matched)))
        return len(matched)

    def get_instance(self, service: ServiceName, key: InstanceKey) -> Instance:
        view = self._require_view(service, f"no service {service.grouped} found!")
        members = view.clusters.get(key.cluster)
        if not members:
            raise NotFound(f"no ips found for cluster {key.cluster} in service {service.grouped}")
        inst = view.find(key)
        if inst is None:
            raise NotFound("no matched ip found!")
        return inst

    def beat(self, cmd: s.Beat) -> s.BeatResult:
        self.beat_count += 1
        switches = self.switches
        view = self._view(cmd.service)
        inst = view.find(cmd.key) if view is not None else None
        if inst is None:
            if cmd.info is None:
                return s.BeatResult(False, switches.clientBeatInterval, switches.lightBeatEnabled)
            # "Data compensation": the beat carries enough to register the instance again.
            inst = Instance(
                ip=cmd.key.ip,
                port=cmd.key.port,
                cluster=cmd.key.cluster,
                weight=cmd.info.weight,
                metadata=cmd.info.metadata,
                ephemeral=cmd.info.ephemeral,
            )
            with audit.because(audit.BEAT):
                self.register_instance(s.RegisterInstance(cmd.service, inst))
        elif inst.ephemeral and not inst.lease:
            # (A connection-bound instance lives as long as its connection: a beat that
            # reaches it answers ok and changes nothing.)
            self.beats.touch(cmd.service, inst.key)
            if not inst.healthy and not inst.marked:
                with audit.because(audit.BEAT):
                    self.consistency.submit(
                        DatumKey.instances(cmd.service, True), SetHealth(((inst.key, True),))
                    )
        interval = switches.clientBeatInterval
        if PreservedKey.HEART_BEAT_INTERVAL in inst.metadata:
            interval = inst.heartbeat_interval_ms
        return s.BeatResult(True, interval, switches.lightBeatEnabled)

    def statuses(self, service: ServiceName) -> ServiceView:
        return self._require_view(service, f"service: {service} not found.")

    def metadata_batch(self, cmd: s.MetadataBatch, delete: bool) -> list[tuple[InstanceKey, bool]]:
        """The keys whose metadata changed, each with whether it is ephemeral."""
        view = self._require_view(cmd.service)
        updated: list[tuple[InstanceKey, bool]] = []
        for ephemeral in (True, False):
            kind = "ephemeral" if ephemeral else "persist"
            if cmd.consistency_type and cmd.consistency_type != kind:
                continue
            members = view.ephemeral if ephemeral else view.persistent
            present = {i.key for i in members}
            if cmd.consistency_type:
                keys: tuple[InstanceKey, ...] | None = None
                hit = [i.key for i in members]
            else:
                hit = [k for k, e in cmd.targets if e == ephemeral and k in present]
                keys = tuple(hit)
            if not hit:
                continue
            self.consistency.submit(
                DatumKey.instances(cmd.service, ephemeral),
                UpdateMetadata(keys, cmd.metadata, delete),
            )
            updated += [(k, ephemeral) for k in hit]
            if ephemeral:  # a preserved.* timeout may have changed
                for k in hit:
                    self.beats.changed(cmd.service, k)
        return updated

    def set_health(self, service: ServiceName, key: InstanceKey, healthy: bool) -> None:
        view = self._view(service)
        if view is None or key.cluster not in view.clusters:
            raise NotFound(f"service or cluster not found: {service.grouped}/{key.cluster}")
        if view.cluster_config(key.cluster).health_checker.type is not CheckType.NONE:
            raise InvalidParam(f"health check is still working, service: {service.grouped}")
        inst = view.find(key)
        if inst is None:
            raise NotFound("no matched ip found!")
        self.consistency.submit(
            DatumKey.instances(service, inst.ephemeral), SetHealth(((key, healthy),))
        )

    # -- services ----------------------------------------------------------------------------

    def create_service(self, spec: s.ServiceSpec) -> None:
        if self._view(spec.service) is not None:
            raise InvalidParam(
                f"specified service already exists, serviceName : {spec.service.grouped}"
            )
        self.consistency.submit(
            DatumKey.meta(spec.service),
            CreateService(
                spec.protect_threshold, spec.metadata, spec.selector, spec.service.grouped
            ),
        )

    def update_service(self, spec: s.ServiceSpec) -> None:
        self._require_view(spec.service, f"service {spec.service.grouped} not found!")
        self.consistency.submit(
            DatumKey.meta(spec.service),
            UpdateService(spec.protect_threshold, spec.metadata, spec.selector, create=True),
        )

    def delete_service(self, service: ServiceName) -> None:
        view = self._view(service)
        if view is None:
            raise InvalidParam(f"specified service not exist, serviceName : {service.grouped}")
        # 1.4.x removes a service even when it still has instances.
        for key in (
            DatumKey.instances(service, True),
            DatumKey.instances(service, False),
            DatumKey.meta(service),
        ):
            if self.consistency.get(key) is not None:
                self.consistency.submit(key, ClearValue())

    def get_service(self, service: ServiceName) -> ServiceView:
        return self._require_view(service)

    def list_services(self, namespace: str, group: str, selector: str | None) -> list[ServiceView]:
        """The services of a namespace, of one group (``*``: every group), matching a label
        selector when given."""
        views = self.registry.services(namespace)
        if group != "*":
            views = [v for v in views if v.name.group == group]
        if selector:
            views = [v for v in views if _label_selector_matches(v, selector)]
        return views

    def service_names(self, namespace: str, expr: str) -> dict[str, list[str]]:
        """Grouped service names per namespace (every namespace when ``namespace`` is blank),
        filtered by a substring."""
        namespaces = [namespace] if namespace else self.registry.namespaces()
        pattern = _substring_pattern(expr)
        result: dict[str, list[str]] = {}
        for ns in namespaces:
            names = [v.name.grouped for v in self.registry.services(ns)]
            if pattern is not None:
                names = [n for n in names if pattern.search(n + ":")]
            result[ns] = names
        return result

    # -- leaders (naming.leaders) -------------------------------------------------------------

    def leader(self, service: ServiceName, cluster: str | None) -> Leadership:
        """The leader of the service or of one of its clusters; 404 for an unknown service or
        cluster, and when no instance there is healthy and enabled."""
        view = self._require_view(service)
        if cluster is not None and cluster not in view.clusters:
            raise NotFound(f"no cluster {cluster} in service {service.grouped}")
        found = leadership(view, cluster)
        if found is None:
            where = (
                service.grouped if cluster is None else f"cluster {cluster} of {service.grouped}"
            )
            raise NotFound(f"no leader found: no healthy instance in {where}")
        return found

    def pin_leader(self, cmd: s.PinLeaderCommand) -> None:
        """Pin an instance of the service (of the cluster, when one is named) as its leader;
        replicated through Raft in the service meta, which a pin creates when missing."""
        view = self._require_view(cmd.service)
        if cmd.cluster is not None and cmd.cluster not in view.clusters:
            raise NotFound(f"no cluster {cmd.cluster} in service {cmd.service.grouped}")
        if not any(
            i.ip == cmd.ip
            and i.port == cmd.port
            and (cmd.cluster is None or i.cluster == cmd.cluster)
            for i in (*view.persistent_map().values(), *view.ephemeral_map().values())
        ):
            where = cmd.service.grouped if cmd.cluster is None else f"cluster {cmd.cluster}"
            raise NotFound(f"no instance {cmd.ip}:{cmd.port} in {where}")
        address = f"{cmd.ip}:{cmd.port}"
        self.consistency.submit(
            DatumKey.meta(cmd.service), PinLeader(scope_of(cmd.cluster), address)
        )

    def unpin_leader(self, cmd: s.UnpinLeaderCommand) -> None:
        """Idempotent: a scope without a pin is left as it is (nothing is submitted)."""
        view = self._require_view(cmd.service)
        scope = scope_of(cmd.cluster)
        if scope in view.settings.pinned_leaders:
            self.consistency.submit(DatumKey.meta(cmd.service), UnpinLeader(scope))

    # -- catalog -----------------------------------------------------------------------------

    def catalog_instances(self, service: ServiceName, cluster: str) -> tuple[Instance, ...]:
        view = self._require_view(service)
        if cluster not in view.clusters:
            raise NotFound(f"no cluster {cluster} in service {service.grouped}")
        return tuple(view.clusters[cluster])

    def catalog_services(
        self,
        namespace: str,
        service_param: str,
        group_param: str,
        instance: str,
        has_ip_count: bool,
    ) -> list[ServiceView]:
        """The services of a namespace matching the console's filters (substrings of the
        name and group, an instance ``ip`` or ``ip:port``, having instances)."""
        service_re = _substring_pattern(service_param)
        group_re = _substring_pattern(group_param)
        views = []
        for view in self.registry.services(namespace):
            if service_re is not None and not service_re.search(view.name.name):
                continue
            if group_re is not None and not group_re.search(view.name.group):
                continue
            if has_ip_count and view.instance_count == 0:
                continue
            if instance and not any(
                instance in (i.ip, f"{i.ip}:{i.port}") for i in view.instances()
            ):
                continue
            views.append(view)
        return views

    # -- namespaces ---------------------------------------------------------------------------

    def namespaces(self) -> list[NamespaceInfo]:
        """Public first, then the registered ones and those that exist only because data is in
        them (Nacos lists only the registered ones, so those were invisible), by name."""
        registered = self.registry.registered_namespaces
        ids = set(registered) | set(self.registry.namespaces())
        ids.discard(DEFAULT_NAMESPACE)
        found = [self._namespace_info(i) for i in ids]
        found.sort(key=lambda n: (n.name.lower(), n.id))
        return [self._namespace_info(DEFAULT_NAMESPACE), *found]

    def get_namespace(self, namespace_id: str) -> NamespaceInfo:
        if (
            namespace_id != DEFAULT_NAMESPACE
            and namespace_id not in self.registry.registered_namespaces
            and not self.registry.services(namespace_id)
        ):
            raise NotFound(f"namespaceId [ {namespace_id} ] not exist")
        return self._namespace_info(namespace_id)

    def namespace_exists(self, namespace_id: str) -> bool:
        return (
            namespace_id == DEFAULT_NAMESPACE or namespace_id in self.registry.registered_namespaces
        )

    def _namespace_info(self, namespace_id: str) -> NamespaceInfo:
        views = self.registry.services(namespace_id)
        if namespace_id == DEFAULT_NAMESPACE:
            ns, kind = PUBLIC_NAMESPACE, NamespaceKind.PUBLIC
        else:
            registered = self.registry.registered_namespaces.get(namespace_id)
            if registered is not None:
                ns, kind = registered, NamespaceKind.CUSTOM
            else:
                ns, kind = Namespace(namespace_id, namespace_id, ""), NamespaceKind.IMPLICIT
        return NamespaceInfo(
            ns.id,
            ns.name,
            ns.description,
            kind,
            len(views),
            sum(v.instance_count for v in views),
            sum(v.healthy_count() for v in views),
        )

    def create_namespace(self, namespace_id: str, name: str, description: str) -> NamespaceInfo:
        """A blank id gets a generated one (a UUID, as Nacos); an implicit namespace (data
        already in it) can be registered under its id, which gives it a name."""
        name, description = check_namespace_text(name, description)
        namespace_id = check_new_namespace_id(namespace_id) if namespace_id else str(uuid.uuid4())
        if namespace_id in self.registry.registered_namespaces:
            raise Conflict("namespaceId already exist")
        self.consistency.submit(
            DatumKey.namespaces(), CreateNamespace(Namespace(namespace_id, name, description))
        )
        return self._namespace_info(namespace_id)

    def update_namespace(self, namespace_id: str, name: str, description: str) -> NamespaceInfo:
        if namespace_id == DEFAULT_NAMESPACE:
            raise InvalidParam("the public namespace cannot be edited")
        name, description = check_namespace_text(name, description)
        self.consistency.submit(
            DatumKey.namespaces(), UpdateNamespace(Namespace(namespace_id, name, description))
        )
        return self._namespace_info(namespace_id)

    def delete_namespace(self, namespace_id: str) -> None:
        """Refused while services remain (Nacos deletes the row and leaves them orphaned,
        alibaba/nacos#8602): delete the services first."""
        if namespace_id == DEFAULT_NAMESPACE:
            raise InvalidParam("the public namespace cannot be deleted")
        if namespace_id not in self.registry.registered_namespaces:
            raise NotFound(f"namespaceId [ {namespace_id} ] not exist")
        services = len(self.registry.services(namespace_id))
        if services:
            raise Conflict(
                f"namespace {namespace_id} still holds {services} service"
                f"{'s' if services != 1 else ''}: delete them first"
            )
        self.consistency.submit(DatumKey.namespaces(), DeleteNamespace(namespace_id))

    # -- clusters and switches ---------------------------------------------------------------

    def put_cluster(self, service: ServiceName, config: ClusterConfig) -> None:
        self._require_view(service, f"service not found: {service.grouped}")
        self.consistency.submit(DatumKey.meta(service), UpsertCluster(config))

    def set_switch(self, entry: str, value: str) -> None:
        apply_switch(self.switches, entry, value)  # validate here: a bad value is a 400
        self.consistency.submit(DatumKey.switches(), SetSwitch(entry, value))


def _leased(view: ServiceView | None, key: InstanceKey) -> bool:
    inst = view.ephemeral_map().get(key) if view is not None else None
    return inst is not None and bool(inst.lease)


def _substring_pattern(expr: str) -> re.Pattern[str] | None:
    """Nacos matches ``.*expr.*`` as a regex; we escape the user text (no ReDoS, no 500)."""
    if not expr:
        return None
    return re.compile(re.escape(expr))


def _label_selector_matches(view: ServiceView, raw: str) -> bool:
    """``{"type":"label","expression":"INSTANCE.metadata.k=v"}`` or ``SERVICE.metadata.k=v``."""
    data = parse_json(raw, "selector")
    if not isinstance(data, dict) or data.get("type") != "label":
        return True
    expression = str(data.get("expression", ""))
    for term in filter(None, (t.strip() for t in expression.split(","))):
        lhs, sep, value = term.partition("=")
        if not sep:
            raise InvalidParam(f"illegal selector expression: {term}")
        scope, _, key = lhs.partition(".metadata.")
        if scope == "SERVICE":
            if view.settings.metadata.get(key) != value:
                return False
        elif scope == "INSTANCE":
            if not any(i.metadata.get(key) == value for i in view.instances()):
                return False
        else:
            raise InvalidParam(f"illegal selector expression: {term}")
    return True
