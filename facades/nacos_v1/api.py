"""The HTTP edge: one decorator for every Nacos endpoint and the one error handler.

``@nacos_api("GET", ...)`` gives a view, in this order: the Nacos 501 for a method the path does
not have, the traffic gate (503 while the node is not UP; ``limitedUrlMap``), authentication for
secured endpoints, Nacos parameter parsing, and the rendering of results and errors. Views stay
short adapters: parse a command, call one operation, return its result.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeAlias
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.request import Request

from accounts.auth import Action, Identity, Resource, authorize
from distro import signing
from distro.http import verify_peer
from facades.nacos_v1.actor import acting_for
from facades.nacos_v1.context import Node, current
from facades.nacos_v1.forward import forward_if_not_owner
from facades.nacos_v1.params import Params
from lib.errors import (
    LimitedUrl,
    NamingError,
    NoSuchApi,
    PayloadTooLarge,
    Unavailable,
)
from lib.http import JSON, error_response, respond
from naming.domain import DEFAULT_GROUP, GROUP_SEPARATOR

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"

# A signed peer request (a forwarded write), looked up in META: cheaper than request.headers.
SIGNED = "HTTP_" + signing.SIGNATURE.upper().replace("-", "_")


class Raw:
    """A pre-rendered body (the hot list endpoint renders its own JSON)."""

    __slots__ = ("body", "content_type")

    def __init__(self, body: str, content_type: str = JSON) -> None:
        self.body = body
        self.content_type = content_type


def unquote_value(value: str) -> str:
    """``unquote_plus(value, errors="replace")``, about 5x faster on the values clients send.

    The Python SDK puts the whole beat JSON, percent-encoded, in the query of every beat: some
    300 characters with a hundred escapes, which ``unquote_plus`` (pure Python) took 18-30 µs
    to decode, a fifth of a beat's CPU. Turning each ``%`` into a ``\\x`` escape lets the C
    ``unicode_escape`` codec do the work; the bytes it yields are then read as UTF-8. Anything
    that codec would read differently (a literal backslash or non-ASCII character, a bad
    escape, bytes that are not UTF-8) takes ``unquote_plus`` itself, so the result is always
    the same (``tests/unit/test_hot_path.py`` checks it on generated strings).
    """
    if "\\" in value or not value.isascii():
        # A literal non-ASCII character is itself to unquote_plus; the codec path would read
        # its latin-1 byte as part of a UTF-8 sequence ("Â\x80" → "\x80").
        return unquote_plus(value, errors="replace")
    try:
        raw = value.replace("+", " ").replace("%", "\\x").encode("latin-1")
        return raw.decode("unicode_escape").encode("latin-1").decode("utf-8")
    except (UnicodeError, ValueError):
        return unquote_plus(value, errors="replace")


def _first_values(encoded: str) -> dict[str, str]:
    """Servlet ``getParameter`` semantics: the first value of a repeated name wins.

    What ``parse_qsl(encoded, keep_blank_values=True)`` gives (a name without ``=`` has the
    value ``""``, empty pieces are skipped, ``+`` is a space, bad escapes are replaced), with
    the unquoting skipped for the pieces that have nothing to unquote, which on the hot
    endpoints is nearly all of them; a repeated name's later values are never decoded. A plain
    dict costs a third of Django's QueryDict, and this a half of ``parse_qsl``.
    """
    values: dict[str, str] = {}
    if encoded:
        for pair in encoded.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            if "%" in name or "+" in name:
                name = unquote_value(name)
            if name in values:
                continue
            if "%" in value or "+" in value:
                value = unquote_value(value)
            values[name] = value
    return values


def params_of(request: HttpRequest) -> Params:
    form: dict[str, str] | None = None
    if request.META.get("CONTENT_TYPE", "").startswith(FORM):
        # Django parses form bodies only for POST; Nacos reads them for every method.
        form = _first_values(request.body.decode("utf-8", "replace"))
    return Params(_first_values(request.META.get("QUERY_STRING", "")), form)


def unhandled_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A bug: log it whole, answer in the Nacos shape (never Django's HTML 500 page)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return respond(f"caused: {type(exc).__name__};", 500)


def to_response(result: Any) -> HttpResponse:
    if isinstance(result, HttpResponse):
        return result
    if isinstance(result, Raw):
        return respond(result.body, 200, result.content_type)
    if isinstance(result, str):
        return respond(result)
    return respond(json.dumps(result, separators=(",", ":")), 200, JSON)


def no_such_api(request: HttpRequest) -> NoSuchApi:
    return NoSuchApi(f"no such api:{request.method}:{request.path}")


def gate(node: Node, request: HttpRequest) -> None:
    # The switches endpoint stays reachable so an operator can always lift a limit or an
    # overridden status again: both are replicated and persisted, so a DOWN set by mistake
    # would otherwise outlive every restart.
    if request.path.endswith("/operator/switches"):
        return
    limited = node.registry.switches.limitedUrlMap
    if limited:
        target = request.get_full_path()
        for prefix, code in limited.items():
            if target.startswith(prefix):
                raise LimitedUrl(code)
    status = node.effective_status()
    if status == "UP":
        return
    if status == "WRITE_ONLY" and request.method != "GET":
        return
    if status == "READ_ONLY" and request.method == "GET":
        return
    raise Unavailable(f"server is {status}now, please try again later!")


def authenticate(node: Node, request: HttpRequest, params: Params) -> Identity | None:
    """The caller's identity, or None when auth is off.

    The source address for login throttling is ``REMOTE_ADDR``: the node is reached directly
    (no proxy header is trusted, so a client cannot pick its own address to dodge a lockout).
    """
    auth = node.auth
    if auth is None:
        return None
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    bearer = header[7:].strip() if header.startswith("Bearer ") else None
    return auth.authenticate(
        bearer,
        params.raw("accessToken"),
        params.raw("username"),
        params.raw("password"),
        request.META.get("REMOTE_ADDR", ""),
    )


def require_global_admin(request: HttpRequest, params: Params, resource: str) -> Identity | None:
    """For node-wide operator changes: only an admin may change how the node behaves for
    everyone (Nacos: the console's admin role)."""
    identity = authenticate(current(), request, params)
    authorize(identity, Action.ADMIN, Resource.console(resource))
    return identity


def naming_resource(params: Params, service: str | None = None) -> Resource:
    """What a naming request touches, as Nacos's ``NamingResourceParser`` names it: the
    namespace (blank and ``public`` are the same), the group and the service without its group;
    no service name means every service of the namespace (``<ns>:*:naming/*``).

    The group is read exactly as the core folds the name (``params.service_name``): the prefix
    of a grouped ``serviceName`` wins over ``groupName``, or a rule on one group would let a
    request name that group while writing to another."""
    namespace = params.raw("namespaceId") or ""
    service = service or params.raw("serviceName") or params.raw("dom") or ""
    if not service:
        return Resource.naming(namespace)
    if GROUP_SEPARATOR in service:
        group, _, service = service.partition(GROUP_SEPARATOR)
    else:
        group = params.raw("groupName") or DEFAULT_GROUP
    return Resource.naming(namespace, group, service)


def namespace_resource(params: Params) -> Resource:
    """Every service of the namespace (``<ns>:*:naming/*``), for the list endpoints: a stray
    ``serviceName`` must not narrow a list down to one service a group-scoped rule covers."""
    return Resource.naming(params.raw("namespaceId") or "")


def beat_resource(params: Params) -> Resource:
    """A beat may name its service only inside the ``beat`` JSON (an RsInfo's ``serviceName``);
    the parameter wins when both are present, as in the core."""
    if params.raw("serviceName") or params.raw("dom"):
        return naming_resource(params)
    raw = params.raw("beat")
    named = None
    if raw is not None:
        try:
            info = json.loads(raw)
        except ValueError:
            info = None  # the handler answers the 400; until then it is "every service"
        if isinstance(info, dict) and isinstance(info.get("serviceName"), str):
            named = info["serviceName"].strip()
    return naming_resource(params, named)


def status_key_resource(params: Params) -> Resource:
    """``/instance/statuses?key=<ns>##<group>@@<service>`` (the namespace may be left out)."""
    key = params.raw("key") or ""
    namespace, sep, grouped = key.partition("##")
    if not sep:
        namespace, grouped = "", key
    group, sep, service = grouped.partition(GROUP_SEPARATOR)
    if not sep:
        group, service = DEFAULT_GROUP, grouped
    return Resource.naming(namespace, group, service)


def operator_resource(page: str) -> Callable[[Params], Resource]:
    resource = Resource.console(page)
    return lambda params: resource


Caller = Identity | None
"""Who is calling: None when auth is off, on an unsecured endpoint, or for a signed forward
from a peer (whose member authenticated the client)."""
Result: TypeAlias = HttpResponse | Raw | str | bool | Mapping[str, Any] | list[Any]
P = ParamSpec("P")


def nacos_api(
    *methods: str,
    secured: bool = True,
    gated: bool = True,
    distro: bool = False,
    action: Action | None = None,
    resource: Callable[[Params], Resource | None] = naming_resource,
) -> Callable[
    [Callable[Concatenate[HttpRequest, Params, Caller, P], Result]],
    Callable[Concatenate[HttpRequest, P], HttpResponse],
]:
    """``distro=True`` marks Nacos's ``@CanDistro`` writes: forwarded to the service's Distro
    owner unless this member owns it, or the request is already a signed forward from a peer
    (whose member authenticated the client; it is never forwarded again).

    The handler gets the parsed parameters and the caller's identity (``Caller``), already
    authorized through ``accounts.authorize`` for ``action`` (default: reading for GET, writing
    otherwise; endpoints that only read whatever the method say READ) on ``resource(params)``
    (default :func:`naming_resource`; None leaves the decision to the handler, which filters).
    A refusal is 403 ``authorization failed!``."""
    allowed = frozenset(methods)

    def decorate(
        handler: Callable[Concatenate[HttpRequest, Params, Caller, P], Result],
    ) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
        def view(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise no_such_api(request)
                node = current()
                if gated:
                    gate(node, request)
                params = params_of(request)
                caller: Caller = None
                sender = ""  # a verified forward's member (audit: whose client it was)
                if distro and node.cluster is not None and SIGNED in request.META:
                    sender = verify_peer(request)
                else:
                    if secured:
                        caller = authenticate(node, request, params)
                        if caller is not None:
                            touched = resource(params)
                            if touched is not None:
                                wanted = action or (
                                    Action.READ if request.method == "GET" else Action.WRITE
                                )
                                authorize(caller, wanted, touched)
                    if distro:
                        forwarded = forward_if_not_owner(node, request, params, caller)
                        if forwarded is not None:
                            return forwarded
                with acting_for(request, caller, sender):
                    return to_response(handler(request, params, caller, *args, **kwargs))
            except NamingError as exc:
                return error_response(exc, request)
            except RequestDataTooBig:
                limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
                return error_response(PayloadTooLarge(f"request body over {limit} bytes"), request)
            except Exception as exc:
                return unhandled_error(request, exc)

        functools.update_wrapper(view, handler)
        return csrf_exempt(view)

    return decorate


View = Callable[[HttpRequest], HttpResponse]


def by_method(**handlers: View) -> View:
    """One path, one handler per method (healthchecks' ``checks`` → ``get_checks`` /
    ``create_check``): each handler carries its own gate and auth requirement. A method the
    path does not have gets the Nacos 501."""

    def dispatch(request: HttpRequest) -> HttpResponse:
        handler = handlers.get(str(request.method))
        if handler is None:
            return error_response(no_such_api(request), request)
        return handler(request)

    return csrf_exempt(dispatch)


def unknown_api(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(no_such_api(request), request)


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF endpoints (console API) render errors in the same Nacos shape."""

    # DRF's handler context always holds the view's Request (a proxy of Django's HttpRequest,
    # typed as its subclass by the stubs), set before any handler code runs.
    request: Request = context["request"]
    if isinstance(exc, NamingError):
        return error_response(exc, request)
    if isinstance(exc, (drf.PermissionDenied, drf.NotAuthenticated)):
        # Bare, as every other refusal of this edge: Nacos's UI matches these texts exactly.
        return respond(str(exc.detail), 403)
    if isinstance(exc, drf.APIException):
        detail = exc.detail
        message = json.dumps(detail) if isinstance(detail, (dict, list)) else str(detail)
        return respond(f"caused: {message};", exc.status_code)
    if isinstance(exc, Http404):
        return respond("caused: not found;", 404)
    if isinstance(exc, PermissionDenied):
        return respond("authorization failed!", 403)
    # Returning None would let Django render its HTML 500 page.
    return unhandled_error(request, exc)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500, for an error outside every API view: still the Nacos shape."""
    return respond("caused: internal error;", 500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's handler400 (a SuspiciousOperation such as too many form fields)."""
    return respond(f"caused: {exception or 'bad request'};", 400)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's handler404 for paths outside the API (JSON, not an HTML page)."""
    body = {"status": 404, "error": "Not Found", "path": request.path}
    return respond(json.dumps(body), 404, JSON)
