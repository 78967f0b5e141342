"""The connections of Nacos 2.x clients on this member (``nacos-v2-grpc.md`` §2).

A client's unary ``ServerCheckRequest`` creates a :class:`Connection` keyed by the transport's
peer address (``ipv4:127.0.0.1:53422``): gRPC keeps one HTTP/2 connection per SDK channel, so every
later unary request from that channel comes from the same peer. The bi-stream's
``ConnectionSetupRequest`` registers it; only then are naming requests served on it (anything
else gets ``UN_REGISTER`` and the SDK moves on). The connection owns what it created: the
ephemeral instances bound to it (their lease names it) and its subscriptions, all released at
once when it ends.

Everything here runs on the gRPC edge's event loop thread, so there are no locks; other threads
only read the counters (``snapshot``, ``stats``), which tolerate a racy read.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from naming.domain import InstanceKey, ServiceName
from naming.leases import make_lease

# Pushes and probes carry a server-chosen requestId the client echoes in its answer.
_request_ids = itertools.count(1)


def next_request_id() -> str:
    return str(next(_request_ids))


def peer_address(peer: str) -> tuple[str, int]:
    """``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5`` (gRPC's ``context.peer()``) → (ip, port)."""
    _, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return host or peer, 0


@dataclass(eq=False)
class Connection:
    id: str
    peer: str
    remote_ip: str
    remote_port: int
    holder: str  # this member's address: the holder half of the leases it grants
    created_ms: int
    last_active: float  # monotonic; every request and stream message refreshes it
    client_ip: str = ""
    version: str = ""
    tenant: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    registered: bool = False
    # The bi-stream's writer drains this; None ends the stream (and with it the connection).
    outbox: asyncio.Queue[bytes | None] | None = None
    # requestId → the client's answer, for pushes and probes sent on the stream.
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    # Ephemeral instances this connection registered, by service: released when it ends.
    instances: dict[ServiceName, set[InstanceKey]] = field(default_factory=dict)
    subscriptions: dict[ServiceName, str] = field(default_factory=dict)  # → clusters
    probe_sent: float = 0.0  # monotonic time of an unanswered ClientDetectionRequest; 0: none
    pushes: int = 0
    push_failures: int = 0

    @property
    def lease(self) -> str:
        return make_lease(self.holder, self.id)

    @property
    def open(self) -> bool:
        return self.registered and self.outbox is not None

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.probe_sent = 0.0

    def send(self, data: bytes | None) -> bool:
        if self.outbox is None:
            return False
        self.outbox.put_nowait(data)
        return True

    def close(self) -> None:
        """End the bi-stream: its handler then releases everything the connection held."""
        if self.outbox is not None:
            self.outbox.put_nowait(None)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.cancel()
        self.pending.clear()

    def describe(self) -> dict[str, Any]:
        """One row of the operator's connection list (Nacos ``/v2/core/loader/current``)."""
        return {
            "connectionId": self.id,
            "clientIp": self.client_ip or self.remote_ip,
            "remoteIp": self.remote_ip,
            "remotePort": self.remote_port,
            "version": self.version,
            "namespace": self.tenant,
            "labels": dict(self.labels),
            "createTime": self.created_ms,
            "idleMillis": int((time.monotonic() - self.last_active) * 1000),
            "instances": sum(len(keys) for keys in self.instances.values()),
            "subscriptions": len(self.subscriptions),
            "pushes": self.pushes,
            "pushFailures": self.push_failures,
        }


@dataclass
class ConnectionStats:
    checked: int = 0
    registered: int = 0
    refused_total_limit: int = 0
    refused_client_limit: int = 0
    closed: int = 0
    probes_sent: int = 0
    ejected: int = 0
    unregistered_requests: int = 0
    unsetup_evicted: int = 0


class ConnectionLimitError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Connections:
    def __init__(self, holder: str, max_connections: int, max_per_client: int) -> None:
        self.holder = holder
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.by_peer: dict[str, Connection] = {}
        self.by_id: dict[str, Connection] = {}
        self.per_client: Counter[str] = Counter()
        # Transports that sent ServerCheck but have not set up their stream, oldest first.
        # Each costs the client only a TCP connection it may close at once, so their number is
        # capped here (at ``max_connections``), not only by their TTL: past the cap the oldest
        # is forgotten. That is harmless to a real client, whose setup checks its transport in
        # again.
        self.unsetup: dict[str, Connection] = {}
        self.stats = ConnectionStats()

    def check(self, peer: str) -> Connection:
        """A ``ServerCheckRequest``: the connection id for this transport (the same one again
        if the client checks twice on one channel)."""
        known = self.by_peer.get(peer)
        if known is not None:
            return known
        ip, port = peer_address(peer)
        now_ms = int(time.time() * 1000)
        conn = Connection(
            id=f"{now_ms}_{ip}_{port}",
            peer=peer,
            remote_ip=ip,
            remote_port=port,
            holder=self.holder,
            created_ms=now_ms,
            last_active=time.monotonic(),
        )
        self.by_peer[peer] = conn
        self.by_id[conn.id] = conn
        self.unsetup[peer] = conn
        self.stats.checked += 1
        while len(self.unsetup) > self.max_connections:
            self.remove(next(iter(self.unsetup.values())))
            self.stats.unsetup_evicted += 1
        return conn

    def register(self, conn: Connection, outbox: asyncio.Queue[bytes | None]) -> None:
        """``ConnectionSetupRequest``: count it against the limits and open it for requests."""
        if conn.registered:
            return
        if self.registered_count() >= self.max_connections:
            self.stats.refused_total_limit += 1
            raise ConnectionLimitError(f"over the connection limit ({self.max_connections})")
        # The transport's address, not the clientIp the client claims in its metadata: a limit
        # keyed by a claim is lifted by claiming another address on each connection.
        client = conn.remote_ip
        if self.max_per_client and self.per_client[client] >= self.max_per_client:
            self.stats.refused_client_limit += 1
            raise ConnectionLimitError(
                f"over the limit of {self.max_per_client} connections from {client}"
            )
        self.per_client[client] += 1
        if self.unsetup.get(conn.peer) is conn:
            del self.unsetup[conn.peer]
        conn.outbox = outbox
        conn.registered = True
        conn.touch()
        self.stats.registered += 1

    def find(self, peer: str) -> Connection | None:
        return self.by_peer.get(peer)

    def remove(self, conn: Connection) -> bool:
        """Forget a connection; True if it was registered (it held instances or subscriptions)."""
        if self.by_peer.get(conn.peer) is conn:
            del self.by_peer[conn.peer]
        if self.by_id.get(conn.id) is conn:
            del self.by_id[conn.id]
        if self.unsetup.get(conn.peer) is conn:
            del self.unsetup[conn.peer]
        was = conn.registered
        if was:
            conn.registered = False
            client = conn.remote_ip
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]
            self.stats.closed += 1
        conn.close()
        conn.outbox = None
        return was

    def registered_count(self) -> int:
        return sum(self.per_client.values())

    def live_ids(self) -> frozenset[str]:
        return frozenset(cid for cid, conn in list(self.by_id.items()) if conn.registered)

    def snapshot(self) -> list[dict[str, Any]]:
        return [conn.describe() for conn in list(self.by_id.values()) if conn.registered]
