"""Write forwarding (Nacos ``DistroFilter``): an ephemeral write or beat for a service another
member owns is proxied once, signed, to that owner; its answer goes back to the client as is.

A forwarded request carries the peer signature, and a signed request is never forwarded again,
so loops are impossible even while two members briefly disagree on ownership (the receiver then
acts as owner; replication and verify settle the rest). If the owner cannot be reached the
client gets a 503 in the Nacos error shape: a local write here would silently diverge.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse

from accounts.auth import Identity
from distro.http import signed_target
from distro.transport import PeerUnreachable
from facades.nacos_v1 import params as s
from facades.nacos_v1.actor import actor_header
from facades.nacos_v1.context import Node
from facades.nacos_v1.params import Params
from lib.blocking import may_block
from lib.errors import NamingError, Unavailable
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
    may_block("forward to the distro owner")
    meta = request.META
    headers = {h: str(v) for h, m in _PASSED_META if (v := meta.get(m))}
    headers.update(actor_header(caller, request))  # the owner audits the client, not us
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
