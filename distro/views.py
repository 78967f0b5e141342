"""Peer endpoints: membership reports and Distro sync, query, snapshot and checksums.

Every one of them accepts only requests signed with the cluster key (401 unsigned, 403 wrong,
stale or replayed); no header such as ``User-Agent: Nacos-Server`` grants anything
(CVE-2021-29441). They are not gated on readiness: a starting member must receive syncs and
reports while it loads (the snapshot endpoint answers 503 until this member has loaded its own).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from distro.forward import verify_peer
from distro.protocol import BadPayload
from distro.service import DistroCluster
from naming import runtime
from naming.errors import Forbidden, InvalidParam, NamingError, Unavailable
from naming.http import JSON, error_response, no_such_api, respond

PeerHandler = Callable[[HttpRequest, DistroCluster, str], HttpResponse]


def peer_api(*methods: str) -> Callable[[PeerHandler], Callable[[HttpRequest], HttpResponse]]:
    allowed = frozenset(methods)

    def decorate(handler: PeerHandler) -> Callable[[HttpRequest], HttpResponse]:
        @functools.wraps(handler)
        def view(request: HttpRequest) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise no_such_api(request)
                node = runtime.current()
                sender = verify_peer(node, request)
                assert node.cluster is not None
                return handler(request, node.cluster, sender)
            except BadPayload as exc:
                return error_response(InvalidParam(str(exc)), request)
            except NamingError as exc:
                return error_response(exc, request)

        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    return decorate


@peer_api("POST")
def report(request: HttpRequest, cluster: DistroCluster, sender: str) -> HttpResponse:
    try:
        data: Any = json.loads(request.body or b"{}")
    except ValueError:
        raise BadPayload("report body is not JSON") from None
    if not isinstance(data, dict):
        raise BadPayload("report body must be a member object")
    cluster.membership.on_report(sender, data)
    answer = {"code": 200, "message": None, "data": cluster.membership.self_report()}
    return respond(json.dumps(answer), 200, JSON)


@peer_api("PUT", "GET")
def datum(request: HttpRequest, cluster: DistroCluster, sender: str) -> HttpResponse:
    if request.method == "PUT":
        cluster.protocol.on_sync(request.body)
        return respond("ok")
    return respond(cluster.protocol.query(request.body), 200, JSON)


@peer_api("GET")
def datums(request: HttpRequest, cluster: DistroCluster, sender: str) -> HttpResponse:
    body = cluster.protocol.snapshot()
    if body is None:
        raise Unavailable("this member is still loading its own snapshot")
    return respond(body, 200, JSON)


@peer_api("PUT")
def checksum(request: HttpRequest, cluster: DistroCluster, sender: str) -> HttpResponse:
    source = request.GET.get("source", sender)
    if source != sender:
        raise Forbidden(f"checksums of {source} signed by {sender}")
    cluster.protocol.on_checksums(sender, request.body)
    return respond("ok")


@peer_api("POST")
def change(request: HttpRequest, cluster: DistroCluster, sender: str) -> HttpResponse:
    return respond(cluster.protocol.on_change(request.body), 200, JSON)
