"""The Eureka REST edge: Netflix's ``/eureka/v2/`` and Spring Cloud's ``/eureka/`` resources over
the core (``shared/facades.md`` §4.1; the mapping is :mod:`facades.eureka.mapping`).

Every view goes through :func:`endpoint`: the node's traffic gate, HTTP Basic credentials
checked as a login is (with auth off: anonymous), and ``lib.errors`` mapped onto Eureka's plain
answers (400 with the reason, 401 with a challenge, 403, 404, 413). Writes are authorized
(``accounts.authorize``, WRITE on the app's service), then sent to the service's Distro owner
when another member owns it, exactly as the v1 edge forwards an ephemeral write
(``facades.nacos_v1.forward``): signed, to a peer-only path on the owner's main port (which
serves no ``/eureka/`` path), so the owner applies it and keeps the lease's beats. Reads answer
from this member's registry, filtered to the apps the caller may read.

Requests arrive on the worker pool (facade paths are not hot routes), so forwarding may block.
"""

from __future__ import annotations

import base64
import collections
import gzip
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.auth import Action, Identity, Resource, authorize, can
from distro.http import verify_peer
from facades.eureka.mapping import (
    GROUP,
    NAMESPACE,
    Key,
    Status,
    app_of,
    apps_hashcode,
    effective_status,
    eureka_views,
    health_of,
    is_eureka,
    millis,
    parse_registration,
    render_instance,
    service_of,
    shown_status,
    stored_override,
    stored_status,
    user_metadata_update,
    vips_of,
    with_status,
)
from facades.eureka.wire import JSON_TYPE, XML_TYPE, parse_instance, to_json, to_xml, wants_json
from facades.nacos_v1.actor import acting_for, actor_header
from facades.nacos_v1.api import gate
from facades.nacos_v1.context import Node, current
from facades.nacos_v1.forward import forward_to
from lib.errors import (
    Forbidden,
    InvalidParam,
    NamingError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from naming.commands import InstanceRef, PatchInstanceCommand, RegisterInstance
from naming.domain import Instance, ServiceName, freeze_metadata
from naming.feed import EventKind, FeedEvent, Scope
from naming.registry import ServiceView

log = logging.getLogger(__name__)

# Where a member forwards a write it does not own: the owner's main port, which serves no
# /eureka/ path; only signed peer requests are answered there.
PEER_PATH = "/nacos/v1/ns/distro/eureka/"
_PREFIXES = ("/eureka/v2/", "/eureka/", PEER_PATH)
MAX_BODY = 64 * 1024  # a registration is about 1.5 KB; Eureka's own limit is Jetty's default
DELTA_WINDOW_S = 180.0  # retentionTimeInMSInDeltaQueue
_INSTANCE_KINDS = frozenset((EventKind.UP, EventKind.DOWN, EventKind.UPDATE, EventKind.REMOVED))
_CHALLENGE = 'Basic realm="eureka"'


@dataclass(frozen=True, slots=True)
class Call:
    node: Node
    request: HttpRequest
    caller: Identity | None
    peer: bool  # a write another member forwarded (it authenticated the client)

    def query(self, name: str) -> str | None:
        value = self.request.GET.get(name)
        return None if value is None else str(value)

    # -- authorization ------------------------------------------------------------------------

    def may_read(self, view: ServiceView) -> bool:
        resource = Resource.naming(NAMESPACE, GROUP, view.name.name)
        return can(self.caller, Action.READ, resource)

    def readable(self, views: Iterable[ServiceView]) -> list[ServiceView]:
        return [v for v in eureka_views(views) if self.may_read(v)]

    def authorize_write(self, service: ServiceName) -> None:
        authorize(self.caller, Action.WRITE, Resource.naming(NAMESPACE, GROUP, service.name))

    def write(self, app: str) -> HttpResponse | None:
        """A write to an app's instance: authorized, then the owner's answer if another member
        owns the app's service (None: apply here)."""
        service = service_of(app)
        self.authorize_write(service)
        return self.forward(service)

    # -- forwarding ---------------------------------------------------------------------------

    def forward(self, service: ServiceName) -> HttpResponse | None:
        """The owner's answer when another member owns the service, else None (apply here)."""
        cluster = self.node.cluster
        if cluster is None or self.peer or cluster.responsible(service.grouped):
            return None
        owner = cluster.owner(service.grouped)
        request = self.request
        path = str(request.path)
        rest = next(path[len(p) :] for p in _PREFIXES if path.startswith(p))
        query = str(request.META.get("QUERY_STRING", ""))
        target = PEER_PATH + rest + (f"?{query}" if query else "")
        headers = {"Content-Type": str(request.META.get("CONTENT_TYPE", "") or XML_TYPE)}
        headers.update(actor_header(self.caller, request))
        return forward_to(cluster, request, service.grouped, owner, target, headers)

    # -- lookups ------------------------------------------------------------------------------

    def app_views(self, app: str) -> list[ServiceView]:
        """The services an app name reads (Nacos names case-insensitively)."""
        wanted = app.strip().upper()
        return [
            v for v in eureka_views(self.node.registry.services(NAMESPACE)) if app_of(v) == wanted
        ]

    def find(self, app: str, instance_id: str, eureka_only: bool) -> tuple[ServiceView, Instance]:
        """An instance of the app by its Eureka id (a Nacos instance's id is ``ip:port``)."""
        for view in self.app_views(app):
            found = _match(view, instance_id, eureka_only)
            if found is not None:
                return view, found
        raise NotFound(f"instance {instance_id} of {app.upper()} is not registered")


def _match(view: ServiceView, instance_id: str, eureka_only: bool) -> Instance | None:
    for inst in view.instances():
        if is_eureka(inst):
            if inst.native_id == instance_id:
                return inst
        elif not eureka_only and f"{inst.ip}:{inst.port}" == instance_id:
            return inst
    return None


# -- the wrapper ----------------------------------------------------------------------------------


def authenticate(node: Node, request: HttpRequest) -> Identity | None:
    """HTTP Basic credentials (Eureka clients send them from the service URL) checked as a
    login is, throttled per source address; with auth off, anonymous."""
    auth = node.auth
    if auth is None:
        return None
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if not header.startswith("Basic "):
        raise Unauthorized("authentication required")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text in the header
        raise Unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise Unauthorized("malformed Basic credentials")
    try:
        return auth.authenticate(
            None, None, username, password, request.META.get("REMOTE_ADDR", "")
        )
    except Forbidden as exc:
        raise Unauthorized(exc.message) from None


def _error(exc: NamingError) -> HttpResponse:
    response = HttpResponse(
        exc.message, status=exc.status, content_type="text/plain; charset=utf-8"
    )
    if exc.status == 401:
        response["WWW-Authenticate"] = _CHALLENGE
    return response


P = ParamSpec("P")
Handler = Callable[Concatenate[Call, P], HttpResponse]


# Answers of this member's Eureka edge, by resource and status ("renew 404": clients told to
# register again; "register 401": bad credentials...): ``operator/metrics`` → ``eureka``.
# Counted by request threads: approximate under concurrency, a metric, not an invariant.
ANSWERS: collections.Counter[str] = collections.Counter()


def stats() -> dict[str, int]:
    return dict(sorted(ANSWERS.items()))


def endpoint(handler: Handler[P]) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
    def view(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        response = _answer(request, *args, **kwargs)
        ANSWERS[f"{handler.__name__} {response.status_code}"] += 1
        return response

    def _answer(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            node = current()
            gate(node, request)
            peer = str(request.path).startswith(PEER_PATH)
            caller, sender = None, ""
            if peer:
                sender = verify_peer(request)
            else:
                caller = authenticate(node, request)
            with acting_for(request, caller, sender):
                return handler(Call(node, request, caller, peer), *args, **kwargs)
        except NamingError as exc:
            return _error(exc)
        except RequestDataTooBig:
            return _error(PayloadTooLarge(f"request body over {MAX_BODY} bytes"))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return HttpResponse("internal error", status=500, content_type="text/plain")

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return csrf_exempt(view)


def _not_allowed(*allowed: str) -> HttpResponse:
    response = HttpResponse(status=405)
    response["Allow"] = ", ".join(allowed)
    return response


def _empty(status: int) -> HttpResponse:
    response = HttpResponse(status=status)
    if status != 204:
        response["Content-Type"] = "text/plain; charset=utf-8"
    return response


def _document(call: Call, tree: dict[str, Any], compressible: bool = False) -> HttpResponse:
    """JSON when ``Accept`` mentions json, else XML; gzip for the registry documents when the
    client accepts it (``ApplicationsResource``)."""
    as_json = wants_json(str(call.request.META.get("HTTP_ACCEPT", "")))
    body = to_json(tree) if as_json else to_xml(tree)
    response = HttpResponse(content_type=JSON_TYPE if as_json else XML_TYPE)
    if compressible and "gzip" in str(call.request.META.get("HTTP_ACCEPT_ENCODING", "")).lower():
        body = gzip.compress(body, compresslevel=5)
        response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept, Accept-Encoding"
    response.content = body
    return response


def _body(request: HttpRequest) -> bytes:
    raw = str(request.META.get("CONTENT_LENGTH", "") or "0")
    if not raw.isdigit():
        raise InvalidParam("bad Content-Length")
    if int(raw) > MAX_BODY:
        raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    body = request.body
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    return body


# -- documents ------------------------------------------------------------------------------------


def _instances(view: ServiceView) -> list[Instance]:
    return list(view.instances())


def _applications(
    groups: dict[str, list[dict[str, Any]]], version: int, hashcode: str
) -> dict[str, Any]:
    return {
        "applications": {
            "versions__delta": str(version),
            "apps__hashcode": hashcode,
            "application": [
                {"name": app, "instance": groups[app]} for app in sorted(groups) if groups[app]
            ],
        }
    }


def _full(
    views: list[ServiceView], keep: Callable[[ServiceView, Instance], bool]
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """The readable registry (what ``keep`` keeps) by app, and its ``apps__hashcode``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    statuses: list[Status] = []
    for view in views:
        app = app_of(view)
        for inst in _instances(view):
            if keep(view, inst):
                groups.setdefault(app, []).append(render_instance(inst, app, view.name.name))
                statuses.append(shown_status(inst))
    return groups, apps_hashcode(statuses)


# -- handlers -------------------------------------------------------------------------------------


@endpoint
def apps(call: Call) -> HttpResponse:
    """GET /apps: the whole registry as Eureka clients see it."""
    if call.request.method != "GET":
        return _not_allowed("GET")
    views = call.readable(call.node.registry.services(NAMESPACE))
    groups, hashcode = _full(views, lambda v, i: True)
    return _document(call, _applications(groups, call.node.feed.last_index, hashcode), True)


@endpoint
def delta(call: Call) -> HttpResponse:
    """GET /apps/delta: what changed in the last 3 minutes, each instance once with its
    actionType, and the hash of the full registry (the client compares it with its own)."""
    if call.request.method != "GET":
        return _app(call, "delta")  # POST /apps/delta registers an app named DELTA
    feed = call.node.feed
    index, scoped = feed.current(Scope(NAMESPACE, GROUP))
    views = call.readable(scoped)
    now, now_ms = time.monotonic(), int(time.time() * 1000)
    latest: dict[tuple[ServiceName, Any], FeedEvent] = {}
    for event in feed.since(0):
        if event.index > index:
            break
        if event.kind not in _INSTANCE_KINDS or event.instance is None:
            continue
        if event.at < now - DELTA_WINDOW_S:
            continue
        name = event.service
        if name.namespace == NAMESPACE and name.group == GROUP:
            latest[(name, event.instance.key)] = event
    present = {(v.name, i.key): (v, i) for v in views for i in _instances(v)}
    readable = {v.name for v in views}
    groups: dict[str, list[dict[str, Any]]] = {}
    for (name, key), event in latest.items():
        app = name.name.upper()
        found = present.get((name, key))
        if found is not None:
            inst = found[1]
            recent = inst.registered_ms >= now_ms - DELTA_WINDOW_S * 1000
            action = "ADDED" if recent else "MODIFIED"
        elif event.kind is EventKind.REMOVED and event.instance is not None:
            if name not in readable and not can(
                call.caller, Action.READ, Resource.naming(NAMESPACE, GROUP, name.name)
            ):
                continue
            inst, action = event.instance, "DELETED"
        else:
            continue
        groups.setdefault(app, []).append(render_instance(inst, app, name.name, action))
    hashcode = apps_hashcode(shown_status(i) for _, i in present.values())
    return _document(call, _applications(groups, index, hashcode), True)


def _app(call: Call, app: str) -> HttpResponse:
    if call.request.method == "POST":
        return _register(call, app)
    if call.request.method != "GET":
        return _not_allowed("GET", "POST")
    views = [v for v in call.app_views(app) if call.may_read(v)]
    if not views:
        raise NotFound(f"application {app.upper()} is not registered")
    name = app.strip().upper()
    instances = [render_instance(i, name, v.name.name) for v in views for i in _instances(v)]
    return _document(call, {"application": {"name": name, "instance": instances}})


@endpoint
def application(call: Call, app: str) -> HttpResponse:
    """GET /apps/{APP} (the application) and POST /apps/{APP} (register)."""
    return _app(call, app)


def _register(call: Call, app: str) -> HttpResponse:
    """Register (204), or 400 with Eureka's reason. The effective status follows Eureka's rules
    (``mapping.effective_status``): an existing override or UP/OUT_OF_SERVICE status stays."""
    body = _body(call.request)
    tree = parse_instance(body, str(call.request.META.get("CONTENT_TYPE", "")))
    reg = parse_registration(app, tree)
    call.authorize_write(reg.service)
    forwarded = call.forward(reg.service)
    if forwarded is not None:
        return forwarded
    ops = call.node.operations
    view = ops.find_service(reg.service)
    existing = view.find(reg.instance.key, True) if view is not None else None
    if view is not None:
        # The same Eureka id under another address or zone: the client moved; Eureka keeps one.
        for inst in view.ephemeral:
            if is_eureka(inst) and inst.native_id == reg.native_id and inst.key != reg.instance.key:
                ops.deregister_instance(InstanceRef(reg.service, inst.key, True))
    override = stored_override(existing) if existing is not None else Status.UNKNOWN
    if override is Status.UNKNOWN:
        override = reg.body_override
    previous = stored_status(existing) if existing is not None else None
    status = effective_status(reg.reported, override, previous)
    inst = with_status(reg.instance, status, override)
    ops.register_instance(RegisterInstance(reg.service, inst))
    if existing is not None and existing.healthy != inst.healthy:
        # A re-registration keeps the stored health (a Nacos upsert); Eureka's status decides.
        ops.patch_instance(
            PatchInstanceCommand(reg.service, inst.key, None, inst.healthy, None, None, None)
        )
    return _empty(204)


@endpoint
def instance(call: Call, app: str, instance_id: str) -> HttpResponse:
    """GET /apps/{APP}/{id}, PUT (renew), DELETE (cancel)."""
    method = call.request.method
    if method == "GET":
        view, inst = call.find(app, instance_id, eureka_only=False)
        if not call.may_read(view):
            raise NotFound(f"instance {instance_id} of {app.upper()} is not registered")
        return _document(call, {"instance": render_instance(inst, app_of(view), view.name.name)})
    if method not in ("PUT", "DELETE"):
        return _not_allowed("GET", "PUT", "DELETE")
    forwarded = call.write(app)
    if forwarded is not None:
        return forwarded
    view, inst = call.find(app, instance_id, eureka_only=True)
    ops = call.node.operations
    if method == "DELETE":
        ops.deregister_instance(InstanceRef(view.name, inst.key, True))
        return _empty(200)
    return _renew(call, view, inst)


def _renew(call: Call, view: ServiceView, inst: Instance) -> HttpResponse:
    """Renew: 404 (the client registers again) when the effective status is UNKNOWN or the
    client's lastDirtyTimestamp is newer than ours (``InstanceResource.renewLease``)."""
    stored = stored_status(inst)
    status = effective_status(stored, stored_override(inst), stored)
    if status is Status.UNKNOWN:
        raise NotFound("status is UNKNOWN: register again")
    dirty = millis(call.query("lastDirtyTimestamp"))
    if dirty is not None and dirty > (millis(inst.metadata.get(Key.LAST_DIRTY)) or 0):
        raise NotFound("the client's copy is newer: register again")
    ops = call.node.operations
    if status is not stored:
        changed = with_status(inst, status)
        ops.patch_instance(
            PatchInstanceCommand(
                view.name, inst.key, None, changed.healthy, changed.enabled, changed.metadata, None
            )
        )
    if ops.renew_reported(view.name, inst.key, health_of(status)[0]) is None:
        raise NotFound("the lease is unknown: register again")
    return _empty(200)


def _set_status(call: Call, view: ServiceView, inst: Instance, changed: Instance) -> None:
    dirty = millis(call.query("lastDirtyTimestamp"))
    if dirty is not None:
        changed = changed.with_changes(
            metadata=freeze_metadata({**changed.metadata, Key.LAST_DIRTY: str(dirty)})
        )
    call.node.operations.patch_instance(
        PatchInstanceCommand(
            view.name, inst.key, None, changed.healthy, changed.enabled, changed.metadata, None
        )
    )


@endpoint
def status(call: Call, app: str, instance_id: str) -> HttpResponse:
    """PUT /apps/{APP}/{id}/status?value=S (the override; OUT_OF_SERVICE hides it as a disabled
    instance) and DELETE (drops the override; the status becomes ``value``, default UNKNOWN,
    so the next renew answers 404 and the client registers its own status again)."""
    method = call.request.method
    if method not in ("PUT", "DELETE"):
        return _not_allowed("PUT", "DELETE")
    forwarded = call.write(app)
    if forwarded is not None:
        return forwarded
    value = call.query("value")
    if method == "PUT":
        if not value:
            raise InvalidParam("Missing value")
        new = Status.of(value)
        view, inst = call.find(app, instance_id, eureka_only=True)
        _set_status(call, view, inst, with_status(inst, new, new))
    else:
        new = Status.of(value) if value else Status.UNKNOWN
        view, inst = call.find(app, instance_id, eureka_only=True)
        _set_status(call, view, inst, with_status(inst, new, Status.UNKNOWN))
    return _empty(200)


@endpoint
def metadata(call: Call, app: str, instance_id: str) -> HttpResponse:
    """PUT /apps/{APP}/{id}/metadata?k=v&...: merges the keys into the instance's metadata."""
    if call.request.method != "PUT":
        return _not_allowed("PUT")
    forwarded = call.write(app)
    if forwarded is not None:
        return forwarded
    view, inst = call.find(app, instance_id, eureka_only=True)
    values = {str(k): str(v) for k, v in call.request.GET.items()}
    if values:
        call.node.operations.patch_instance(
            PatchInstanceCommand(
                view.name, inst.key, None, None, None, user_metadata_update(inst, values), None
            )
        )
    return _empty(200)


@endpoint
def instance_by_id(call: Call, instance_id: str) -> HttpResponse:
    """GET /instances/{id}: an instance of any app."""
    if call.request.method != "GET":
        return _not_allowed("GET")
    for view in call.readable(call.node.registry.services(NAMESPACE)):
        found = _match(view, instance_id, eureka_only=False)
        if found is not None:
            app = app_of(view)
            return _document(call, {"instance": render_instance(found, app, view.name.name)})
    raise NotFound(f"instance {instance_id} is not registered")


def _by_vip(call: Call, vip: str, secure: bool) -> HttpResponse:
    if call.request.method != "GET":
        return _not_allowed("GET")
    wanted = vip.strip().lower()
    views = call.readable(call.node.registry.services(NAMESPACE))
    groups, hashcode = _full(views, lambda v, i: wanted in vips_of(i, v, secure))
    if not groups:
        raise NotFound(f"no instance has the {'secure ' if secure else ''}VIP address {vip}")
    return _document(call, _applications(groups, call.node.feed.last_index, hashcode))


@endpoint
def vips(call: Call, vip: str) -> HttpResponse:
    """GET /vips/{vip}."""
    return _by_vip(call, vip, secure=False)


@endpoint
def svips(call: Call, svip: str) -> HttpResponse:
    """GET /svips/{svip}."""
    return _by_vip(call, svip, secure=True)
