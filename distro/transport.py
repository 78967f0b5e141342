"""The peer transport seam: one signed request to another member, and its answer.

``HttpPeerTransport`` sends over pooled keep-alive HTTP (urllib3) and signs every request with
the cluster key (``distro.signing``). ``InMemoryTransport`` calls a handler per address in the
same process, so Distro's protocol can be tested without sockets (hashicorp/raft's
``inmem_transport.go`` is the model). Both are thread-safe: sync, verify, reports and forwarded
requests use one transport from many threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from distro import signing

PEER_AGENT = "Nacos-Server:1.4.6-py"  # informative only: never trusted (CVE-2021-29441)


class PeerUnreachable(Exception):
    """The peer could not be asked or did not answer. ``refused``: nothing listens there."""

    def __init__(self, peer: str, reason: str, refused: bool = False) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.refused = refused


@dataclass(frozen=True, slots=True)
class PeerResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class PeerTransport(Protocol):
    def call(
        self,
        peer: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 2.0,
    ) -> PeerResponse:
        """Send one signed request; ``path`` includes the query. Raises PeerUnreachable.

        Called from any thread; a slow peer blocks only the calling thread.
        """
        ...


class HttpPeerTransport:
    def __init__(self, local: str, key: bytes, pool_size: int = 8) -> None:
        import urllib3

        self.local = local
        self._key = key
        # retries=False: every caller has its own retry policy (sync backoff, verify rounds),
        # and a forwarded client write must be tried exactly once.
        self._pool = urllib3.PoolManager(num_pools=32, maxsize=pool_size, retries=False)

    def call(
        self,
        peer: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 2.0,
    ) -> PeerResponse:
        import urllib3

        signed = {
            "User-Agent": PEER_AGENT,
            **(headers or {}),
            **signing.sign(self._key, method, path, body, self.local),
        }
        try:
            response = self._pool.request(
                method,
                f"http://{peer}{path}",
                body=body or None,
                headers=signed,
                timeout=urllib3.Timeout(connect=min(timeout, 2.0), read=timeout),
                redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:
            refused = isinstance(exc.__cause__ or exc, ConnectionRefusedError) or (
                "refused" in str(exc).lower()
            )
            raise PeerUnreachable(peer, "connection failed", refused=refused) from None
        except urllib3.exceptions.HTTPError as exc:
            raise PeerUnreachable(peer, type(exc).__name__) from None
        return PeerResponse(response.status, response.data, dict(response.headers))


Handler = Callable[[str, str, str, bytes, Mapping[str, str]], PeerResponse]


class InMemoryTransport:
    """Routes calls to handlers registered per address; ``down`` addresses refuse."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.down: set[str] = set()
        self.calls = 0
        self._lock = threading.Lock()

    def bind(self, local: str) -> BoundTransport:
        return BoundTransport(self, local)

    def deliver(
        self, local: str, peer: str, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> PeerResponse:
        with self._lock:
            self.calls += 1
            handler = self.handlers.get(peer)
        if handler is None or peer in self.down or local in self.down:
            raise PeerUnreachable(peer, "down", refused=True)
        return handler(local, method, path, body, headers)


@dataclass
class BoundTransport:
    network: InMemoryTransport
    local: str

    def call(
        self,
        peer: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 2.0,
    ) -> PeerResponse:
        return self.network.deliver(self.local, peer, method, path, body, headers or {})
