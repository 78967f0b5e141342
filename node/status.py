"""The operator's view of the node: metrics, members, Raft state (the *data*).

Edges render it (the Nacos v1 edge answers ``operator/metrics``, ``operator/servers``,
``core/cluster/nodes``... with it as is). It reads every layer, so it lives in the composition
root, next to the runtime that owns those layers.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from facades.airlift import context as airlift
from facades.eureka import views as eureka_views
from node.version import VERSION
from raft import guard as raft_guard
from server import serving

if TYPE_CHECKING:  # node.runtime builds a StatusReport over itself
    from node.runtime import NodeRuntime


class StatusReport:
    def __init__(self, node: NodeRuntime) -> None:
        self._node = node

    def raft(self) -> Mapping[str, Any]:
        """The Raft status of this member, and which members vote (HTTP addresses)."""
        cfg = self._node.config
        status = dict(self._node.persistent.status())
        status.setdefault("voter", cfg.voter)
        members = cfg.members or (cfg.address,)
        status["voters"] = [m for m in members if cfg.is_voter(m)]
        status["nonVoters"] = [m for m in members if not cfg.is_voter(m)]
        return status

    def metrics(self) -> dict[str, Any]:
        node = self._node
        load = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        notifier = node.notifier.stats
        views = node.registry.views()
        owned = [v for v in views if node.is_responsible(v.name)]
        return {
            "status": node.effective_status(),
            "serviceCount": node.registry.service_count,
            "instanceCount": node.registry.instance_count,
            "raftNotifyTaskCount": node.notifier.pending(),
            "responsibleServiceCount": len(owned),
            "responsibleInstanceCount": sum(v.instance_count for v in owned),
            "cpu": round(min(1.0, load / cores), 4),
            "load": round(load, 4),
            "mem": rss_kb * 1024,
            "beatCount": node.operations.beat_count,
            "raftTransport": raft_guard.stats(),
            "notifier": {
                "notified": notifier.notified,
                "processed": notifier.processed,
                "batches": notifier.batches,
                "listeners": [
                    {
                        "name": st.name,
                        "calls": st.calls,
                        "failures": st.failures,
                        "lastError": st.last_error,
                    }
                    for st in notifier.listeners
                ],
            },
            "distro": dict(node.cluster.status()) if node.cluster is not None else None,
            "http": serving.status(),
            "grpc": node.grpc.status() if node.grpc is not None else None,
            "airlift": airlift_status(),
            "eureka": eureka_views.stats(),
            "feed": node.feed.status(),
            "auth": node.auth.stats() if node.auth is not None else None,
            "health": {
                "sweeps": node.health.stats.sweeps,
                "pausesDetected": node.health.stats.pauses,
                "ownershipChanges": node.health.stats.ownership_changes,
                "regainedServices": node.health.stats.regained_services,
                "armedInstances": node.health.armed_instances,
                "leasedInstances": node.health.leased_instances,
                "expiryChecks": node.health.stats.expiry_checks,
                "expiredUnhealthy": node.health.stats.expired_unhealthy,
                "expiredRemoved": node.health.stats.expired_removed,
                "cleanedServices": node.health.stats.cleaned_services,
                "checks": node.health.stats.checks,
                "checkVerdicts": node.health.stats.check_verdicts,
                "errors": node.health.stats.errors,
                "lastError": node.health.stats.last_error,
            },
            # Member-local: the renewals this member counted for the services it owns.
            "selfPreservation": node.health.preservation.as_json(),
            "leases": {
                "graceSeconds": node.leases.grace_s,
                "ticks": node.leases.stats.ticks,
                "scans": node.leases.stats.scans,
                "orphansSeen": node.leases.stats.orphans_seen,
                "orphansTracked": node.leases.tracked,
                "removed": node.leases.stats.removed,
                "failures": node.leases.stats.failures,
                "releaseFailuresReported": node.leases.stats.release_failures_reported,
                "lastError": node.leases.stats.last_error,
            },
        }

    def member(self, address: str | None = None) -> dict[str, Any]:
        """Nacos Member JSON, plus when it last reported and whether its Distro data is loaded.

        Other members' states come from the membership reports (UP / SUSPICIOUS / DOWN /
        STARTING); ``raftVoter`` whether it votes in Raft; ``raftConnected`` whether our Raft
        link to it is up (None for a non-voter: it connects to the voters anonymously, so no
        member can tell which one a link belongs to, and non-voters never link to each other).
        """
        node = self._node
        cfg = node.config
        address = address or cfg.address
        host, _, port_text = address.rpartition(":")
        extend: dict[str, Any] = {
            "raftPort": cfg.raft_address(address).rpartition(":")[2]
            if address != cfg.address
            else str(cfg.raft_port),
            "version": VERSION,
            "site": "unknown",
            "raftVoter": cfg.is_voter(address),
        }
        if address == cfg.address:
            state = node.member_state().value
            extend["lastRefreshTime"] = int(time.time() * 1000)
            extend["distroReady"] = node.ready
            fail_count = 0
        else:
            info = node.cluster.membership.info(address) if node.cluster is not None else None
            state = info.state.value if info is not None else "DOWN"
            if info is not None and info.version:
                extend["version"] = info.version  # what the member itself reported
            extend["lastRefreshTime"] = info.last_report_ms if info is not None else 0
            extend["distroReady"] = bool(info is not None and info.distro_ready)
            fail_count = info.fail_count if info is not None else 0
            raw = node.syncobj.getStatus() if node.syncobj is not None else {}
            extend["raftConnected"] = (
                raw.get(f"partner_node_status_server_{cfg.raft_address(address)}") == 2
                if cfg.is_voter(address)
                else None
            )
        return {
            "ip": host,
            "port": int(port_text),
            "state": state,
            "extendInfo": extend,
            "address": address,
            "failAccessCnt": fail_count,
        }

    def connections(self) -> list[dict[str, Any]]:
        """The Nacos 2.x clients connected to this member (empty without the gRPC edge)."""
        grpc = self._node.grpc
        return grpc.connection_list() if grpc is not None else []

    def members(self) -> list[dict[str, Any]]:
        node = self._node
        return [self.member(m) for m in (node.config.members or (node.config.address,))]

    def leader_http_address(self) -> str | None:
        node = self._node
        leader = node.persistent.status().get("leader")
        if leader is None:
            return None
        if str(leader) == f"{node.config.host}:{node.config.raft_port}":
            return node.config.address
        for member in node.config.members:
            if node.config.raft_address(member) == str(leader):
                return member
        return None


def airlift_status() -> dict[str, Any] | None:
    """The airlift edge's counters (None before a node is installed)."""
    try:
        return dict(airlift.stats().as_json())
    except RuntimeError:
        return None
