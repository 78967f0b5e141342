"""The node runtime: every piece of live state one node process owns, wired together.

``runnode`` builds one :class:`NodeRuntime` in the process's main thread (pysyncobj's tick thread
dies with the thread that created it), serves HTTP, and calls :meth:`NodeRuntime.stop` on
SIGTERM. Tests build one with :func:`in_memory_runtime`, where the persistent store is the same
in-memory store Distro uses, so views and operations run without sockets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import accounts.auth
import accounts.directory
import distro.http
from accounts.auth import Authenticator
from accounts.directory import AccountsService
from consistency.datum import Datum, DatumKey, KeyKind
from consistency.notifier import Notifier
from consistency.service import ConsistencyService, DelegateConsistencyService
from distro.membership import MemberState
from distro.service import DistroCluster
from distro.signing import Verifier
from distro.store import DistroStore
from distro.sync import SyncSettings
from distro.transport import HttpPeerTransport
from facades.nacos_v1 import context as nacos_v1
from facades.nacos_v1.push import PushService
from facades.nacos_v1.render import render_push
from facades.nacos_v2.server import GrpcEdge
from naming.audit import DEFAULT_MAX_AGE_H, DEFAULT_MAX_ENTRIES, AuditLog
from naming.changes import Change
from naming.codec import DATUM_CODEC
from naming.domain import ServiceName
from naming.feed import DEFAULT_MAX_EVENTS, DEFAULT_RETENTION_S, ChangeFeed
from naming.health import BeatTable, CheckTable, HealthServices, HealthSettings
from naming.leases import DEFAULT_GRACE_S, DEFAULT_INTERVAL_S, HolderState, LeaseReaper
from naming.operations import NamingOperations
from naming.registry import Registry
from node.status import StatusReport
from node.version import VERSION
from raft.node import RaftConfig, build_syncobj, wait_ready
from raft.service import RaftConsistencyService
from raft.state import ReplicatedState

__all__ = ["VERSION", "NodeConfig", "NodeRuntime", "current", "install"]

log = logging.getLogger(__name__)


class NodeStatus(StrEnum):
    STARTING = "STARTING"
    UP = "UP"
    DOWN = "DOWN"


@dataclass
class NodeConfig:
    host: str = "127.0.0.1"
    port: int = 8848
    raft_port: int = 7848
    data_dir: Path = Path("data")
    members: tuple[str, ...] = ()
    member_raft_ports: dict[str, int] = field(default_factory=dict)
    # Members (HTTP addresses) that replicate Raft without a vote (pysyncobj read-only nodes);
    # every member, voter or not, is a full Distro member.
    nonvoters: frozenset[str] = frozenset()
    raft_password: str = field(default="", repr=False)
    health: HealthSettings = field(default_factory=HealthSettings)
    raft_ready_timeout_s: float = 30.0
    raft_fsync: bool = True
    # Signs and verifies peer requests; derived from the cluster secret (``lib.keys.node_keys``),
    # None for a standalone node.
    peer_key: bytes | None = field(default=None, repr=False)
    redis_url: str = ""  # Distro sync through Celery on Redis when set; in-process otherwise
    distro: SyncSettings = field(default_factory=SyncSettings)
    report_interval_s: float = 2.0
    audit_max_entries: int = DEFAULT_MAX_ENTRIES
    audit_max_age_h: float = DEFAULT_MAX_AGE_H
    # How long a connection-bound instance may stay orphaned (its holder down, its connection
    # gone) before it is removed: the time its client gets to reconnect and re-register.
    lease_grace_s: float = DEFAULT_GRACE_S
    lease_interval_s: float = DEFAULT_INTERVAL_S
    feed_retention_s: float = DEFAULT_RETENTION_S
    feed_max_events: int = DEFAULT_MAX_EVENTS

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cluster(self) -> bool:
        return len(self.members) > 1

    def raft_address(self, member: str) -> str:
        """A member's raft address: listed explicitly, else its HTTP port - 1000 (Nacos)."""
        host, _, port = member.rpartition(":")
        return f"{host}:{self.member_raft_ports.get(member, int(port) - 1000)}"

    @property
    def voter(self) -> bool:
        return self.address not in self.nonvoters

    def is_voter(self, member: str) -> bool:
        return member not in self.nonvoters

    def raft_partners(self) -> tuple[str, ...]:
        """The voters' raft addresses but ours: a voter's peers, and the nodes a non-voter
        follows. Non-voters are never listed: they connect to the voters themselves."""
        return tuple(
            self.raft_address(m)
            for m in self.members
            if m != self.address and m not in self.nonvoters
        )


class NodeRuntime:
    def __init__(
        self,
        config: NodeConfig,
        notifier: Notifier,
        ephemeral: ConsistencyService,
        persistent: ConsistencyService,
        syncobj: Any = None,
        distro: DistroCluster | None = None,
        persist_audit: bool = False,
    ) -> None:
        self.config = config
        self.started_at = time.time()
        self.notifier = notifier
        self.distro = ephemeral
        self.persistent = persistent
        self.syncobj = syncobj
        self.cluster = distro  # Distro membership, sync and verify; None when standalone
        self.consistency = DelegateConsistencyService(ephemeral, persistent, notifier)
        # The audit trail of the writes submitted here (<data_dir>/audit.jsonl when persisted).
        self.audit = AuditLog(
            config.address,
            config.audit_max_entries,
            config.audit_max_age_h,
            config.data_dir if persist_audit else None,
        )
        self.consistency.add_observer(self.audit)
        self.registry = Registry(self.consistency.value)
        notifier.add_listener("registry", self.registry.on_datum)
        self.beats = BeatTable()
        # Users, roles and permissions: replicated like every persistent value; caches of
        # identities and decisions drop when a new version lands on this member.
        self.accounts = AccountsService(self.consistency)
        notifier.add_listener("accounts", self._accounts_changed)
        self.checks = CheckTable()  # last active checks: written by self.health, read by console
        self.operations = NamingOperations(
            self.consistency, self.registry, self.beats, checks=self.checks
        )
        # The Nacos v1 edge's UDP push: a listener of registry changes, rendering as its list.
        self.push = PushService(config.host, render_push)
        self.registry.listeners.add("push", self.push.on_service_changed)
        # What changed, in order (naming.feed): held fetches, event streams and revisions.
        self.feed = ChangeFeed(config.feed_retention_s, config.feed_max_events)
        self.registry.listeners.add("feed", self.feed.on_view)
        self.health = HealthServices(
            self.registry,
            self.beats,
            lambda key, change: self.consistency.submit(key, change),
            self.is_responsible,
            config.health,
            is_prober=self.is_leader,
            checks=self.checks,
            # Ownership changes only through the membership listener below (always, when
            # standalone): the expiry walks every service only when it fires.
            ownership_events=True,
        )
        # Orphaned connection-bound instances (naming.leases). The gRPC edge installs its live
        # connection ids with ``runtime.leases.connections = ...`` and releases a closed
        # connection's instances with ``runtime.leases.release_connection``.
        self.leases = LeaseReaper(
            self.registry,
            self.operations.release_leased,
            config.address,
            self.holder_state,
            self.is_responsible,
            members=lambda: config.members,
            grace_s=config.lease_grace_s,
            interval_s=config.lease_interval_s,
        )
        # The Nacos 2.x gRPC edge, attached by runnode (``attach_grpc``); None in tests that
        # build a runtime without it.
        self.grpc: GrpcEdge | None = None
        self.status = NodeStatus.STARTING
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self.auth: Authenticator | None = None  # when auth is on (set by the builder)
        # Run once persistent data is loaded, before the node reports UP (the bootstrap admin).
        self.before_up: list[Callable[[], None]] = []
        self.peer_verifier: Verifier | None = None  # in cluster mode
        self.report = StatusReport(self)
        if distro is not None:
            distro.membership.add_listener(self._ownership_changed)

    def attach_grpc(self, edge: GrpcEdge) -> None:
        """Plug the gRPC edge in: its pushes follow the registry, its live connections keep
        their leased instances alive. Started and stopped by runnode with the HTTP server."""
        self.grpc = edge
        self.registry.listeners.add("grpc-push", edge.push.on_service_changed)
        self.leases.connections = edge.live_connection_ids
        edge.release = self.leases.release_connection

    def _accounts_changed(self, datum: Datum) -> None:
        if datum.key.kind is KeyKind.ACCOUNTS:
            self.accounts.changed()

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def http_port(self) -> int:
        return self.config.port

    def is_responsible(self, service: ServiceName) -> bool:
        """Who expires beats and auto-cleans a service: its Distro owner (this node alone
        when standalone). Beats are forwarded to the owner, so only it knows them."""
        if self.cluster is None:
            return True
        return self.cluster.responsible(service.grouped)

    def holder_state(self, address: str) -> HolderState:
        """Whether the member at ``address`` can still hold client connections: anything but
        DOWN counts as up (SUSPICIOUS may be a slow network; STARTING will hold them again
        soon); a stranger, a former member, or any other member of a standalone node is down."""
        if address == self.address:
            return "up"
        if self.cluster is None:
            return "down"
        return "down" if self.cluster.membership.state_of(address) is MemberState.DOWN else "up"

    def is_leader(self, _service: object = None) -> bool:
        """Who probes persistent instances: the Raft leader, so the log gets one verdict per
        change. A deposed leader may run one more round; its verdicts are idempotent."""
        if not self.config.cluster or self.syncobj is None:
            return True
        # Called per service per round: ask pysyncobj directly, not through getStatus(),
        # which builds a dict of every peer's indexes each time.
        return bool(self.syncobj._isLeader())

    def member_state(self) -> MemberState:
        if self.status is NodeStatus.DOWN:
            return MemberState.DOWN
        return MemberState.UP if self.ready else MemberState.STARTING

    def _ownership_changed(self, mapper: Any) -> None:
        # Beats we saw while we owned a service are stale once it moved away; if it comes
        # back, the sweeper must start a full timeout afresh (Nacos #1873, #7697).
        self.beats.retain(lambda service: bool(mapper.responsible(service.grouped)))
        self.health.ownership_changed()
        self.health.stats.ownership_changes += 1

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def effective_status(self) -> str:
        override = self.registry.switches.overriddenServerStatus
        if override:
            return str(override)
        if not self.ready:
            return NodeStatus.STARTING.value
        # Only the AP side decides: without a Raft leader, ephemeral instances stay readable and
        # writable (as Distro in Nacos), persistent writes answer 503 on their own, and reads of
        # persistent data are served from this member's copy.
        available = self.consistency.ephemeral.is_available()
        return NodeStatus.UP.value if available else NodeStatus.DOWN.value

    def start_background(self) -> None:
        """Start the threads that do not need readiness (the notifier replays the journal;
        membership reports say STARTING; peer syncs arrive while we load)."""
        self.audit.start()
        self.notifier.start()
        if self.cluster is not None:
            self.cluster.start()

    def finish_start(self) -> None:
        """Wait for persistent data, then open the gate and start the timers."""
        if self.syncobj is not None:
            # A member that cannot reach a quorum stays STARTING (503 to clients) and keeps
            # trying: exiting would only turn a partition into a restart loop.
            while not wait_ready(self.syncobj, self.config.raft_ready_timeout_s):
                if self._stopping.is_set():
                    return
                if not self.config.cluster:
                    raise RuntimeError("raft did not become ready in time")
                log.warning(
                    "no raft leader yet (waiting for a quorum of the voters %s)",
                    ", ".join(m for m in self.config.members if self.config.is_voter(m)),
                )
        # Never serve (or push) an empty list for a service that has instances elsewhere.
        if self.cluster is not None and self.cluster.load_snapshot(self._stopping) is None:
            return
        if self.syncobj is not None or self.cluster is not None:
            # Everything replayed or loaded reaches the registry before we serve.
            ticket = self.notifier.notify_barrier()
            self.notifier.wait_processed(ticket, 60.0)
        for key in (DatumKey.switches(), DatumKey.namespaces()):
            datum = self.consistency.get(key)
            if datum is not None:
                self.registry.on_datum(datum)
        for hook in self.before_up:
            hook()
        self.health.start()
        self.leases.start()
        self.push.start()
        self.status = NodeStatus.UP
        self._ready.set()
        if self.cluster is not None:
            self.cluster.mark_ready()
        log.info("node %s is UP", self.config.address)

    def stop(self) -> None:
        self.status = NodeStatus.DOWN
        self._stopping.set()
        self.push.stop()
        self.leases.stop()
        self.health.stop()
        if self.cluster is not None:
            self.cluster.stop()  # its last report tells the peers we are leaving
        stop_batcher = getattr(self.persistent, "stop", None)
        if stop_batcher is not None:
            stop_batcher()
        if self.syncobj is not None:
            try:
                self.syncobj.destroy_synchronous()
            except Exception:  # shutting down: log and continue with the rest
                log.exception("raft shutdown failed")
        self.notifier.stop()
        self.audit.stop()


def in_memory_runtime(config: NodeConfig | None = None) -> NodeRuntime:
    notifier = Notifier()
    runtime = NodeRuntime(
        config or NodeConfig(),
        notifier,
        DistroStore(notifier, DATUM_CODEC),
        DistroStore(notifier, DATUM_CODEC),
    )
    runtime.start_background()
    runtime.finish_start()
    return runtime


def raft_runtime(config: NodeConfig) -> NodeRuntime:
    """Build the real node: pysyncobj for persistent data. Call on the main thread."""
    notifier = Notifier()
    # The state machine gets the core's codec and change decoder (raft imports no naming).
    state = ReplicatedState(notifier.notify, DATUM_CODEC, Change.decode)
    raft_config = RaftConfig(
        self_address=f"{config.host}:{config.raft_port}",
        partners=config.raft_partners(),
        data_dir=config.data_dir,
        password=config.raft_password,
        voter=config.voter,
    )
    syncobj = build_syncobj(raft_config, state, durable=config.raft_fsync)
    distro = distro_cluster(config, notifier, lambda: runtime.member_state())
    ephemeral: ConsistencyService = (
        distro if distro is not None else DistroStore(notifier, DATUM_CODEC)
    )
    runtime = NodeRuntime(
        config,
        notifier,
        ephemeral,
        RaftConsistencyService(state, syncobj, raft_config.self_address, config.voter),
        syncobj,
        distro,
        persist_audit=True,
    )
    # distro_cluster() above already refused a cluster without a peer key.
    if config.cluster and config.peer_key is not None:
        runtime.peer_verifier = Verifier(config.peer_key, config.address)
    runtime.start_background()
    return runtime


def distro_cluster(
    config: NodeConfig, notifier: Notifier, self_state: Callable[[], MemberState]
) -> DistroCluster | None:
    if not config.cluster:
        return None
    if config.peer_key is None:
        raise ValueError("cluster mode needs a peer key (derived from the cluster secret)")
    return DistroCluster(
        config.address,
        config.members,
        notifier,
        HttpPeerTransport(config.address, config.peer_key),
        self_state,
        version=VERSION,
        settings=config.distro,
        codec=DATUM_CODEC,
        decode_change=Change.decode,
        celery_app=_celery_app() if config.redis_url else None,
        report_interval_s=config.report_interval_s,
    )


def _celery_app() -> Any:
    """The Celery app, handed to Distro (which never imports the server package). Imported
    here, only in cluster mode with Redis: it configures Celery from the Django settings."""
    from server.celery import app

    return app


_current: NodeRuntime | None = None


def install(runtime: NodeRuntime | None) -> None:
    """Make ``runtime`` the node this process serves: every edge and app gets its part."""
    global _current
    _current = runtime
    nacos_v1.install(runtime)
    accounts.auth.install(
        runtime.auth if runtime is not None else None,
        runtime.accounts if runtime is not None else None,
    )
    accounts.directory.install(runtime.accounts if runtime is not None else None)
    peers = None
    if runtime is not None and runtime.cluster is not None and runtime.peer_verifier is not None:
        peers = distro.http.Peers(runtime.cluster, runtime.peer_verifier)
    distro.http.install(peers)


def current() -> NodeRuntime:
    if _current is None:
        raise RuntimeError("no node runtime installed (start the node with `manage.py runnode`)")
    return _current
