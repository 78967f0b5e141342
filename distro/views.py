"""Peer endpoints: membership reports and Distro sync, query, snapshot and checksums.

Every one of them accepts only requests signed with the cluster key (401 unsigned, 403 wrong,
stale or replayed); no header such as ``User-Agent: Nacos-Server`` grants anything
(CVE-2021-29441). They are not gated on readiness: a starting member must receive syncs and
reports while it loads (the snapshot endpoint answers 503 until this member has loaded its own).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from distro.http import installed, verify_peer
from distro.protocol import PEER_MAX_BODY, BadPayload
from distro.service import DistroCluster
from lib.errors import Forbidden, NamingError, NoSuchApi, PayloadTooLarge, Unavailable
from lib.http import JSON, error_response, respond

log = logging.getLogger(__name__)

PeerHandler = Callable[[HttpRequest, bytes, DistroCluster, str], HttpResponse]


def peer_body(request: HttpRequest) -> bytes:
    """The body, read past Django's 1 MiB client limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``):
    sync batches, checksum rounds and key queries of a large registry are bigger. Only signed
    requests get this far, and they stay under ``PEER_MAX_BODY``."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadPayload("bad Content-Length") from None
    if length > PEER_MAX_BODY:
        raise PayloadTooLarge(f"peer request body over {PEER_MAX_BODY} bytes")
    return request.read(length) if length > 0 else b""


def peer_api(*methods: str) -> Callable[[PeerHandler], Callable[[HttpRequest], HttpResponse]]:
    allowed = frozenset(methods)

    def decorate(handler: PeerHandler) -> Callable[[HttpRequest], HttpResponse]:
        @functools.wraps(handler)
        def view(request: HttpRequest) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise NoSuchApi(f"no such api:{request.method}:{request.path}")
                body = peer_body(request)
                sender = verify_peer(request, body)
                peers = installed()
                assert peers is not None  # verify_peer refuses every call without peers
                return handler(request, body, peers.cluster, sender)
            except NamingError as exc:  # BadPayload included: a 400
                return error_response(exc, request)
            except Exception as exc:
                # A bug: log it whole, answer in the Nacos shape (never Django's HTML page).
                log.exception("unhandled error on %s %s", request.method, request.path)
                return respond(f"caused: {type(exc).__name__};", 500)

        return csrf_exempt(view)

    return decorate


@peer_api("POST")
def report(request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str) -> HttpResponse:
    try:
        data: Any = json.loads(body or b"{}")
    except ValueError:
        raise BadPayload("report body is not JSON") from None
    if not isinstance(data, dict):
        raise BadPayload("report body must be a member object")
    cluster.membership.on_report(sender, data)
    answer = {"code": 200, "message": None, "data": cluster.membership.self_report()}
    return respond(json.dumps(answer), 200, JSON)


@peer_api("PUT", "GET")
def datum(request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str) -> HttpResponse:
    if request.method == "PUT":
        cluster.protocol.on_sync(body)
        return respond("ok")
    return respond(cluster.protocol.query(body), 200, JSON)


@peer_api("GET")
def datums(request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str) -> HttpResponse:
    snapshot = cluster.protocol.snapshot()
    if snapshot is None:
        raise Unavailable("this member is still loading its own snapshot")
    return respond(snapshot, 200, JSON)


@peer_api("PUT")
def checksum(
    request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str
) -> HttpResponse:
    source = request.GET.get("source", sender)
    if source != sender:
        raise Forbidden(f"checksums of {source} signed by {sender}")
    cluster.protocol.on_checksums(sender, body)
    return respond("ok")


@peer_api("POST")
def touch(request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str) -> HttpResponse:
    handler = cluster.on_touch
    if handler is None:
        raise Unavailable("this member does not take renewals yet")
    return respond(handler(body), 200, JSON)


@peer_api("POST")
def change(request: HttpRequest, body: bytes, cluster: DistroCluster, sender: str) -> HttpResponse:
    return respond(cluster.protocol.on_change(body), 200, JSON)
