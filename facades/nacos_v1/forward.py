"""Write forwarding (Nacos ``DistroFilter``): an ephemeral write or beat for a service another
member owns is proxied once, signed, to that owner; its answer goes back to the client as is.

A forwarded request carries the peer signature, and a signed request is never forwarded again,
so loops are impossible even while two members briefly disagree on ownership (the receiver then
acts as owner; replication and verify settle the rest). If the owner cannot be reached the
client gets a 503 in the Nacos error shape: a local write here would silently diverge.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from django.http import HttpRequest, HttpResponse

from accounts.auth import Identity
from distro.http import signed_target
from distro.service import DistroCluster
from distro.transport import PeerUnreachable
from facades.nacos_v1 import params as s
from facades.nacos_v1.actor import actor_header
from facades.nacos_v1.context import Node
from facades.nacos_v1.params import Params
from lib.blocking import Deferred, PeerCall, PeerReply, may_block, on_loop
from lib.errors import NamingError, Unavailable
from lib.http import error_response
from naming.domain import to_bool

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 2.0  # Nacos's proxy connect/read timeout
_PASSED_HEADERS = ("Content-Type", "User-Agent", "Client-Version", "Accept-Encoding")
# Read from META (Content-Type is CGI's CONTENT_TYPE there): ``request.headers`` would parse
# every header of the request to return four.
_PASSED_META = tuple(
    (h, "CONTENT_TYPE" if h == "Content-Type" else "HTTP_" + h.upper().replace("-", "_"))
    for h in _PASSED_HEADERS
)


def _targets_distro(request: HttpRequest, params: Params, default_ephemeral: bool) -> bool:
    if request.method == "GET":
        return False
    if request.path.endswith("/instance") and request.method in ("POST", "PUT", "DELETE"):
        raw = params.raw("ephemeral")
        ephemeral = default_ephemeral if raw in (None, "") else to_bool(raw)
        return ephemeral  # persistent writes go through Raft from any member
    return True


def forward_if_not_owner(
    node: Node, request: HttpRequest, params: Params, caller: Identity | None = None
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
    meta = request.META
    headers = {h: str(v) for h, m in _PASSED_META if (v := meta.get(m))}
    headers.update(actor_header(caller, request))  # the owner audits the client, not us
    method, target, body = str(request.method), signed_target(request), request.body
    if on_loop():
        # The event loop sends it on a pooled connection and serves others meanwhile.
        signed = cluster.transport.signed_headers(owner, method, target, body, headers)
        call = PeerCall(owner, method, target, body, signed, FORWARD_TIMEOUT_S)
        return DeferredResponse(
            Deferred(call, functools.partial(_complete, cluster, request, grouped, owner))
        )
    return forward_to(cluster, request, grouped, owner, target, headers)


def forward_to(
    cluster: DistroCluster,
    request: HttpRequest,
    grouped: str,
    owner: str,
    target: str,
    headers: Mapping[str, str],
) -> HttpResponse:
    """Send the request, signed, to ``owner`` at ``target`` from a worker thread and relay its
    answer (the Eureka edge forwards its writes through this too, to a peer-only path: the
    owner's main port serves no facade path)."""
    method, body = str(request.method), request.body
    may_block("forward to the distro owner")
    try:
        answer = cluster.transport.call(
            owner, method, target, body, dict(headers), timeout=FORWARD_TIMEOUT_S
        )
    except PeerUnreachable as exc:
        raise _unreachable(cluster, grouped, owner, method, exc.reason, exc.refused) from None
    return _relay(cluster, answer.status, answer.headers, answer.body)


class DeferredResponse(HttpResponse):
    """A view's answer that is still on its way from the owner (only ever returned on the
    event loop; ``server/wsgi.py`` hands its :class:`Deferred` to the server)."""

    def __init__(self, deferred: Deferred[HttpResponse]) -> None:
        super().__init__(status=202)
        self.deferred = deferred


def _complete(
    cluster: DistroCluster,
    request: HttpRequest,
    grouped: str,
    owner: str,
    reply: PeerReply | None,
    reason: str,
    refused: bool,
) -> HttpResponse:
    if reply is None:
        exc = _unreachable(cluster, grouped, owner, str(request.method), reason, refused)
        return error_response(exc, request)
    return _relay(cluster, reply.status, reply.headers, reply.body)


def _unreachable(
    cluster: DistroCluster, grouped: str, owner: str, method: str, reason: str, refused: bool
) -> Unavailable:
    cluster.forward_failures += 1
    cluster.membership.on_failure(owner, refused)
    log.warning("forward of %s %s to %s failed: %s", method, grouped, owner, reason)
    return Unavailable(
        f"distro owner {owner} of service {grouped} is unreachable ({reason}); please retry"
    )


def _relay(
    cluster: DistroCluster, status: int, headers: Mapping[str, str], body: bytes
) -> HttpResponse:
    """The owner's answer, as the client's."""
    cluster.forwarded += 1
    response = HttpResponse(
        body,
        status=status,
        content_type=headers.get("Content-Type", "text/plain; charset=UTF-8"),
    )
    response["Content-Length"] = str(len(body))
    return response
