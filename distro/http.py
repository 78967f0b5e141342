"""The HTTP side of the peer API, shared by the peer endpoints (``distro.views``) and by any
edge that accepts signed forwards (``facades.nacos_v1``): who this member's peers are, how a
peer request is verified. Responses are ``lib.http``'s, the same as the Nacos v1 edge's.

The composition root installs the cluster and the verifier once (:func:`install`); nothing here
imports the core or an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from distro import signing
from distro.service import DistroCluster
from distro.signing import RejectionLog, Verifier
from lib.errors import Forbidden, NamingError

# Process-wide: every refused peer call (peer endpoints and forwarded writes) is logged here.
rejections = RejectionLog()


@dataclass(frozen=True, slots=True)
class Peers:
    cluster: DistroCluster
    verifier: Verifier


_peers: Peers | None = None


def install(peers: Peers | None) -> None:
    """Set by the composition root in cluster mode; None when standalone (no peer endpoints)."""
    global _peers
    _peers = peers


def installed() -> Peers | None:
    return _peers


def signed_target(request: HttpRequest) -> str:
    """The path and raw query a peer signature covers (the same on both sides)."""
    query = str(request.META.get("QUERY_STRING", ""))
    return str(request.path) + (f"?{query}" if query else "")


# The headers a signature check reads, with their WSGI names: read from META directly, since
# ``request.headers`` parses every header of the request to answer six.
_SIGNED_HEADERS = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_"))
    for name in (
        signing.NODE,
        signing.RECEIVER,
        signing.TIMESTAMP,
        signing.NONCE,
        signing.SIGNATURE,
        signing.ACTOR,
    )
)


def signature_headers(request: HttpRequest) -> dict[str, str]:
    meta = request.META
    return {name: str(value) for name, key in _SIGNED_HEADERS if (value := meta.get(key))}


# The environ key under which a request keeps its verified sender (see :func:`verify_peer`).
VERIFIED = "naming.peer"


def verify_peer(request: HttpRequest, body: bytes | None = None) -> str:
    """The signing member's address; raises 401/403 and logs why (rate-limited).

    Standalone nodes have no peers. A request that the server runs a second time (it reached a
    blocking step on the event loop, ``lib.blocking``) keeps its first verification under
    ``naming.peer``: its nonce is spent, so verifying again would call it a replay. Clients
    cannot set that key: their headers only ever become ``HTTP_*`` keys.
    """
    verified = request.META.get(VERIFIED)
    if verified is not None:
        return str(verified)
    try:
        peers = _peers
        if peers is None:
            raise Forbidden("peer endpoints are served in cluster mode only")
        sender = str(
            peers.verifier.verify(
                str(request.method),
                signed_target(request),
                request.body if body is None else body,
                signature_headers(request),
            )
        )
        if sender not in peers.cluster.membership.members:
            raise Forbidden(f"{sender} is not a member of this cluster")
    except NamingError as exc:
        remote = str(request.META.get("REMOTE_ADDR", "?"))
        rejections.rejected_call(str(request.method), str(request.path), remote, exc.message)
        raise
    request.META[VERIFIED] = sender
    return sender
