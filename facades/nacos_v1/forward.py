"""Write forwarding (Nacos ``DistroFilter``): an ephemeral write or beat for a service another
member owns is proxied once, signed, to that owner; its answer goes back to the client as is.

A forwarded request carries the peer signature, and a signed request is never forwarded again,
so loops are impossible even while two members briefly disagree on ownership (the receiver then
acts as owner; replication and verify settle the rest). If the owner cannot be reached the
client gets a 503 in the Nacos error shape: a local write here would silently diverge.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse

from distro.signing import RejectionLog
from distro.transport import PeerUnreachable
from facades.nacos_v1 import params as s
from facades.nacos_v1.params import Params
from lib.errors import Forbidden, NamingError, Unavailable
from naming.domain import to_bool

if TYPE_CHECKING:
    from node.runtime import NodeRuntime

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 2.0  # Nacos's proxy connect/read timeout
_PASSED_HEADERS = ("Content-Type", "User-Agent", "Client-Version", "Accept-Encoding")
# Process-wide: every refused peer call (peer endpoints and forwarded writes) is logged here.
rejections = RejectionLog()


def _targets_distro(request: HttpRequest, params: Params, default_ephemeral: bool) -> bool:
    if request.method == "GET":
        return False
    if request.path.endswith("/instance") and request.method in ("POST", "PUT", "DELETE"):
        raw = params.raw("ephemeral")
        ephemeral = default_ephemeral if raw in (None, "") else to_bool(raw)
        return ephemeral  # persistent writes go through Raft from any member
    return True


def signed_target(request: HttpRequest) -> str:
    """The path and raw query a peer signature covers (the same on both sides)."""
    query = str(request.META.get("QUERY_STRING", ""))
    return str(request.path) + (f"?{query}" if query else "")


def verify_peer(node: NodeRuntime, request: HttpRequest, body: bytes | None = None) -> str:
    """The signing member's address; raises 401/403 and logs why (rate-limited).

    Standalone nodes have no peers."""
    try:
        if node.peer_verifier is None or node.cluster is None:
            raise Forbidden("peer endpoints are served in cluster mode only")
        sender = str(
            node.peer_verifier.verify(
                str(request.method),
                signed_target(request),
                request.body if body is None else body,
                request.headers,
            )
        )
        if sender not in node.cluster.membership.members:
            raise Forbidden(f"{sender} is not a member of this cluster")
    except NamingError as exc:
        remote = str(request.META.get("REMOTE_ADDR", "?"))
        rejections.rejected_call(str(request.method), str(request.path), remote, exc.message)
        raise
    return sender


def forward_if_not_owner(
    node: NodeRuntime, request: HttpRequest, params: Params
) -> HttpResponse | None:
    cluster = node.cluster
    if cluster is None:
        return None
    if not _targets_distro(request, params, bool(node.registry.switches.defaultInstanceEphemeral)):
        return None
    try:
        grouped = s.service_name(params).grouped
    except NamingError:
        return None  # the view reports the bad parameter itself
    if cluster.responsible(grouped):
        return None
    owner = cluster.owner(grouped)
    headers = {h: v for h in _PASSED_HEADERS if (v := request.headers.get(h))}
    try:
        answer = cluster.transport.call(
            owner,
            str(request.method),
            signed_target(request),
            request.body,
            headers,
            timeout=FORWARD_TIMEOUT_S,
        )
    except PeerUnreachable as exc:
        cluster.forward_failures += 1
        cluster.membership.on_failure(owner, exc.refused)
        log.warning("forward of %s %s to %s failed: %s", request.method, grouped, owner, exc)
        raise Unavailable(
            f"distro owner {owner} of service {grouped} is unreachable ({exc.reason}); please retry"
        ) from None
    cluster.forwarded += 1
    response = HttpResponse(
        answer.body,
        status=answer.status,
        content_type=answer.headers.get("Content-Type", "text/plain; charset=UTF-8"),
    )
    response["Content-Length"] = str(len(answer.body))
    return response
