"""The airlift discovery edge: one function per call (``[AD]DynamicAnnouncementResource``,
``StaticAnnouncementResource``, ``ServiceResource``), each parse → core → render.

Answers are airlift's: 202 for an announcement (with ``Cache-Control: max-age``), 204 for a
delete (also of what is not there), 201 and ``Location`` for a static announcement, and
``Services`` JSON for lookups; every refusal is plain text with its 4xx (400 for bad input or
another environment, 403 for a write from an untrusted network, 413 for an oversized body),
and nothing is stored. Writes are taken only from ``NAMING_AIRLIFT_TRUSTED_NETWORKS`` (airlift
clients send no credentials); reads are open, as airlift's are.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from facades.airlift import context, nodes, render
from facades.airlift.announcements import (
    MAX_BODY_BYTES,
    NAMESPACE,
    EnvironmentMismatch,
    check_node_id,
    check_uuid,
    instance_of,
    is_airlift,
    parse_dynamic,
    parse_static,
    service_name,
)
from lib.errors import Forbidden, NamingError, PayloadTooLarge, Unavailable
from lib.http import JSON, TEXT, respond
from naming import audit
from naming.commands import InstanceRef, RegisterInstance

log = logging.getLogger(__name__)

P = ParamSpec("P")


def airlift_api(
    *methods: str,
) -> Callable[
    [Callable[Concatenate[HttpRequest, P], HttpResponse]],
    Callable[Concatenate[HttpRequest, P], HttpResponse],
]:
    """Method check, node status, trust (every method but GET is a write), the actor for the
    audit trail, and the one mapping of core errors to airlift's plain-text 4xx."""
    allowed = frozenset(methods)

    def decorate(
        handler: Callable[Concatenate[HttpRequest, P], HttpResponse],
    ) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
        def view(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            stats = context.stats()
            address = str(request.META.get("REMOTE_ADDR", ""))
            try:
                if request.method not in allowed:
                    return _status(405, f"{request.method} is not allowed on {request.path}")
                write = request.method != "GET"
                status = context.current().effective_status()
                if status != "UP" and not (status == "READ_ONLY" and not write):
                    raise Unavailable(f"server is {status} now, please try again later")
                if write:
                    if not context.settings().trusts(address):
                        stats.untrusted += 1
                        raise Forbidden(
                            f"airlift announcements are taken only from trusted networks "
                            f"(NAMING_AIRLIFT_TRUSTED_NETWORKS); {address} is not in them"
                        )
                    if len(request.body) > MAX_BODY_BYTES:
                        raise PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
                reason = f"{request.method} {request.path}"
                with audit.acting("airlift", address, audit.VIA_API, reason[:200]):
                    return handler(request, *args, **kwargs)
            except RequestDataTooBig:
                stats.bad_requests += 1
                return _status(413, f"request body over {MAX_BODY_BYTES} bytes")
            except NamingError as exc:
                if isinstance(exc, EnvironmentMismatch):
                    stats.wrong_environment += 1
                elif exc.status < 500 and not isinstance(exc, Forbidden):
                    stats.bad_requests += 1
                return _status(exc.status, exc.message)
            except Exception:  # a bug: logged whole, answered without a traceback
                log.exception("airlift: unhandled error on %s %s", request.method, request.path)
                return _status(500, "internal error")

        functools.update_wrapper(view, handler)
        return csrf_exempt(view)

    return decorate


def _status(status: int, message: str) -> HttpResponse:
    return respond(message, status, TEXT)


def _empty(status: int) -> HttpResponse:
    response = HttpResponse(status=status)
    response["Content-Length"] = "0"
    return response


# -- dynamic announcements ------------------------------------------------------------------


@airlift_api("PUT", "DELETE")
def announcement(request: HttpRequest, node_id: str) -> HttpResponse:
    node_id = check_node_id(node_id)
    node, settings, stats = context.current(), context.settings(), context.stats()
    if request.method == "DELETE":
        nodes.withdraw(node, node_id, None, stats)
        stats.deletes += 1
        return _empty(204)
    parsed = parse_dynamic(request.body, settings.environment, node_id)
    client = str(request.META.get("REMOTE_ADDR", ""))
    nodes.announce(node, node_id, parsed, client, settings.max_age_s, stats)
    stats.announcements += 1
    response = _empty(202)
    response["Cache-Control"] = f"max-age={settings.announce_every_s}"
    return response


@airlift_api("DELETE")
def announcement_type(request: HttpRequest, node_id: str, kind: str) -> HttpResponse:
    """airlift's ``DELETE /v1/announcement/{node_id}/{type}``: one type of the node."""
    nodes.withdraw(context.current(), check_node_id(node_id), kind, context.stats())
    return _empty(204)


# -- lookups --------------------------------------------------------------------------------


def _services(request: HttpRequest, kind: str | None, pool: str | None) -> HttpResponse:
    settings, stats = context.settings(), context.stats()
    stats.lookups += 1
    found = render.lookup(context.current().registry, kind, pool)
    body = render.services_body(settings.environment, found)
    tag = render.etag(body)
    # airlift's client sends the last value back in a request header named ETag; HTTP
    # caches use If-None-Match. Either one, equal: 304.
    sent = {request.META.get("HTTP_ETAG"), request.META.get("HTTP_IF_NONE_MATCH")}
    if tag in sent:
        stats.not_modified += 1
        response = _empty(304)
    else:
        response = respond(body, 200, JSON)
    response["ETag"] = tag
    response["Cache-Control"] = f"max-age={settings.lookup_every_s}"
    return response


@airlift_api("GET")
def all_services(request: HttpRequest) -> HttpResponse:
    return _services(request, None, None)


@airlift_api("GET")
def services_of_type(request: HttpRequest, kind: str) -> HttpResponse:
    return _services(request, kind, None)


@airlift_api("GET")
def services_of_pool(request: HttpRequest, kind: str, pool: str) -> HttpResponse:
    return _services(request, kind, pool)


# -- static announcements (persistent instances) --------------------------------------------


@airlift_api("GET", "POST")
def statics(request: HttpRequest) -> HttpResponse:
    settings = context.settings()
    if request.method == "GET":
        found = render.statics(context.current().registry)
        return respond(render.services_body(settings.environment, found), 200, JSON)
    return _create_static(request)


def _create_static(request: HttpRequest) -> HttpResponse:
    settings, stats = context.settings(), context.stats()
    address = str(request.META.get("REMOTE_ADDR", ""))
    parsed = parse_static(request.body, settings.environment)
    service_id = str(uuid.uuid4())
    location = parsed.location if parsed.location is not None else f"/somewhere/{service_id}"
    inst = instance_of(
        service_id,
        parsed.pool,
        location,
        parsed.properties,
        address,
        node_id=None,
        max_age_s=settings.max_age_s,
    )
    name = service_name(parsed.type, parsed.pool)
    node = context.current()
    node.operations.register_instance(RegisterInstance(name, inst))
    stats.statics += 1
    response = respond(render.json_bytes(render.service_json(name, inst)), 201, JSON)
    response["Location"] = request.build_absolute_uri(f"/v1/announcement/static/{service_id}")
    return response


@airlift_api("DELETE")
def static(request: HttpRequest, service_id: str) -> HttpResponse:
    wanted = check_uuid(service_id, "static announcement id")
    node = context.current()
    for view in node.registry.services(NAMESPACE):
        for inst in view.persistent:
            if is_airlift(inst) and inst.native_id == wanted:
                node.operations.deregister_instance(InstanceRef(view.name, inst.key, False))
    return _empty(204)
