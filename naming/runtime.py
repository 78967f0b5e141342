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
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from consistency.datum import DatumKey
from consistency.notifier import Notifier
from consistency.service import ConsistencyService, DelegateConsistencyService
from distro.store import DistroStore
from naming.errors import Unavailable
from naming.health import BeatTable, HealthServices, HealthSettings
from naming.operations import NamingOperations
from naming.push import PushService
from naming.registry import Registry

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
    raft_password: str = ""
    health: HealthSettings = field(default_factory=HealthSettings)
    raft_ready_timeout_s: float = 30.0
    raft_fsync: bool = True

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

    def raft_partners(self) -> tuple[str, ...]:
        return tuple(self.raft_address(m) for m in self.members if m != self.address)


class NodeRuntime:
    def __init__(
        self,
        config: NodeConfig,
        notifier: Notifier,
        ephemeral: ConsistencyService,
        persistent: ConsistencyService,
        syncobj: Any = None,
    ) -> None:
        self.config = config
        self.started_at = time.time()
        self.notifier = notifier
        self.distro = ephemeral
        self.persistent = persistent
        self.syncobj = syncobj
        self.consistency = DelegateConsistencyService(ephemeral, persistent, notifier)
        self.registry = Registry(self.consistency.value)
        notifier.add_listener("registry", self.registry.on_datum)
        self.beats = BeatTable()
        self.operations = NamingOperations(self.consistency, self.registry, self.beats)
        self.push = PushService(config.host, self.operations.render_push)
        self.operations.push = self.push
        self.registry.listeners.append(("push", self.push.on_service_changed))
        self.health = HealthServices(
            self.registry,
            self.beats,
            lambda key, change: self.consistency.submit(key, change),  # type: ignore[arg-type]
            self.is_responsible,
            config.health,
        )
        self.status = NodeStatus.STARTING
        self._ready = threading.Event()
        self.auth: Any = None  # naming.auth.Authenticator when auth is on (set by the builder)

    def is_responsible(self, _service: object) -> bool:
        """Who runs expiry, active checks and auto-clean for a service.

        Standalone: this node. Cluster: the Raft leader (persistent data is the only data a
        cluster holds until Distro arrives, and one prober keeps the log free of duplicate
        verdicts). A deposed leader may run one more round; its verdicts are idempotent.
        """
        if not self.config.cluster or self.syncobj is None:
            return True
        # Called per service per round: ask pysyncobj directly, not through getStatus(),
        # which builds a dict of every peer's indexes each time.
        return bool(self.syncobj._isLeader())

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def effective_status(self) -> str:
        override = self.registry.switches.overriddenServerStatus
        if override:
            return str(override)
        if not self.ready:
            return NodeStatus.STARTING.value
        return NodeStatus.UP.value if self.consistency.is_available() else NodeStatus.DOWN.value

    def start_background(self) -> None:
        """Start the threads that do not need readiness (the notifier replays the journal)."""
        self.notifier.start()

    def finish_start(self) -> None:
        """Wait for persistent data, then open the gate and start the timers."""
        if self.syncobj is not None:
            from raft.node import wait_ready

            # A member that cannot reach a quorum stays STARTING (503 to clients) and keeps
            # trying: exiting would only turn a partition into a restart loop.
            while not wait_ready(self.syncobj, self.config.raft_ready_timeout_s):
                if self.status is NodeStatus.DOWN:
                    return
                if not self.config.cluster:
                    raise RuntimeError("raft did not become ready in time")
                log.warning(
                    "no raft leader yet (waiting for a quorum of %s)",
                    ", ".join(self.config.members),
                )
            # Everything replayed from the journal reaches the registry before we serve.
            ticket = self.notifier.notify_barrier()
            self.notifier.wait_processed(ticket, 30.0)
        switches = self.consistency.get(DatumKey.switches())
        if switches is not None:
            self.registry.on_datum(switches)
        self.health.start()
        self.push.start()
        self.status = NodeStatus.UP
        self._ready.set()
        log.info("node %s is UP", self.config.address)

    def stop(self) -> None:
        self.status = NodeStatus.DOWN
        self.push.stop()
        self.health.stop()
        stop_batcher = getattr(self.persistent, "stop", None)
        if stop_batcher is not None:
            stop_batcher()
        if self.syncobj is not None:
            try:
                self.syncobj.destroy_synchronous()
            except Exception:  # shutting down: log and continue with the rest
                log.exception("raft shutdown failed")
        self.notifier.stop()


def in_memory_runtime(config: NodeConfig | None = None) -> NodeRuntime:
    notifier = Notifier()
    runtime = NodeRuntime(
        config or NodeConfig(), notifier, DistroStore(notifier), DistroStore(notifier)
    )
    runtime.start_background()
    runtime.finish_start()
    return runtime


def raft_runtime(config: NodeConfig) -> NodeRuntime:
    """Build the real node: pysyncobj for persistent data. Call on the main thread."""
    from raft.node import RaftConfig, build_syncobj
    from raft.service import RaftConsistencyService
    from raft.state import ReplicatedState

    notifier = Notifier()
    state = ReplicatedState(notifier.notify)
    raft_config = RaftConfig(
        self_address=f"{config.host}:{config.raft_port}",
        partners=config.raft_partners(),
        data_dir=config.data_dir,
        password=config.raft_password,
    )
    syncobj = build_syncobj(raft_config, state, durable=config.raft_fsync)
    ephemeral: Any = EphemeralUnavailable() if config.cluster else DistroStore(notifier)
    runtime = NodeRuntime(
        config, notifier, ephemeral, RaftConsistencyService(state, syncobj), syncobj
    )
    runtime.start_background()
    return runtime


class EphemeralUnavailable:
    """Cluster mode before Distro replication exists (issue #3): ephemeral data would live on
    one node only and silently diverge, so ephemeral writes are refused with a clear 503."""

    ready = True

    def submit(self, key: DatumKey, change: object, timeout: float) -> Any:
        raise Unavailable(
            "ephemeral instances are not replicated in cluster mode yet; "
            "register persistent instances (ephemeral=false)"
        )

    def apply_remote(self, datum: Any) -> bool:
        return False

    def get(self, key: DatumKey) -> None:
        return None

    def items(self) -> list[Any]:
        return []

    def is_available(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"replicated": False}


_current: NodeRuntime | None = None


def install(runtime: NodeRuntime | None) -> None:
    global _current
    _current = runtime


def current() -> NodeRuntime:
    if _current is None:
        raise RuntimeError("no node runtime installed (start the node with `manage.py runnode`)")
    return _current
