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
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, QueryDict

from naming import runtime
from naming.errors import Forbidden, NamingError, NoSuchApi, PayloadTooLarge, Unavailable
from naming.serializers import Params

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

Handler = Callable[..., Any]


class Raw:
    """A pre-rendered body (the hot list endpoint renders its own JSON)."""

    __slots__ = ("body", "content_type")

    def __init__(self, body: str, content_type: str = JSON) -> None:
        self.body = body
        self.content_type = content_type


def params_of(request: HttpRequest) -> Params:
    form: Any = None
    content_type = request.content_type or ""
    if content_type.startswith(FORM):
        # Django parses form bodies only for POST; Nacos reads them for every method.
        form = request.POST if request.method == "POST" else QueryDict(request.body)
    return Params(request.GET, form)


def error_response(exc: NamingError, request: HttpRequest) -> HttpResponse:
    if isinstance(exc, NoSuchApi):
        body = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()),
            "status": 501,
            "error": "Not Implemented",
            "message": exc.message,
            "path": request.path,
        }
        return HttpResponse(json.dumps(body), status=501, content_type=JSON)
    if isinstance(exc, (Forbidden, Unavailable)):
        return HttpResponse(exc.message, status=exc.status, content_type=TEXT)
    return HttpResponse(f"caused: {exc.message};", status=exc.status, content_type=TEXT)


def to_response(result: Any) -> HttpResponse:
    if isinstance(result, HttpResponse):
        return result
    if isinstance(result, Raw):
        return HttpResponse(result.body, content_type=result.content_type)
    if isinstance(result, str):
        return HttpResponse(result, content_type=TEXT)
    return HttpResponse(json.dumps(result, separators=(",", ":")), content_type=JSON)


def no_such_api(request: HttpRequest) -> NoSuchApi:
    return NoSuchApi(f"no such api:{request.method}:{request.path}")


def gate(node: runtime.NodeRuntime, request: HttpRequest) -> None:
    limited = node.registry.switches.limitedUrlMap
    # The switches endpoint stays reachable so an operator can always lift a limit again.
    if limited and not request.path.endswith("/operator/switches"):
        target = request.get_full_path()
        for prefix, code in limited.items():
            if target.startswith(prefix):
                err = Unavailable("")
                err.status = code
                raise err
    status = node.effective_status()
    if status == "UP":
        return
    if status == "WRITE_ONLY" and request.method != "GET":
        return
    if status == "READ_ONLY" and request.method == "GET":
        return
    raise Unavailable(f"server is {status}now, please try again later!")


def authenticate(node: runtime.NodeRuntime, request: HttpRequest, params: Params) -> None:
    auth = node.auth
    if auth is None:
        return
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header.startswith("Bearer ") else None
    auth.authenticate(
        bearer, params.raw("accessToken"), params.raw("username"), params.raw("password")
    )


def nacos_api(*methods: str, secured: bool = True, gated: bool = True) -> Callable[[Handler], Any]:
    allowed = frozenset(methods)

    def decorate(handler: Handler) -> Any:
        @functools.wraps(handler)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise no_such_api(request)
                node = runtime.current()
                if gated:
                    gate(node, request)
                params = params_of(request)
                if secured:
                    authenticate(node, request, params)
                return to_response(handler(request, params, *args, **kwargs))
            except NamingError as exc:
                return error_response(exc, request)
            except RequestDataTooBig:
                limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
                return error_response(PayloadTooLarge(f"request body over {limit} bytes"), request)
            except Exception as exc:  # a bug: log it whole, answer in the Nacos shape
                log.exception("unhandled error on %s %s", request.method, request.path)
                return HttpResponse(f"caused: {type(exc).__name__};", status=500, content_type=TEXT)

        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    return decorate


def unknown_api(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(no_such_api(request), request)


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF endpoints (console API) render errors in the same Nacos shape."""
    from rest_framework import exceptions as drf

    request = context.get("request")
    if isinstance(exc, NamingError):
        return error_response(exc, request)  # type: ignore[arg-type]
    if isinstance(exc, drf.APIException):
        detail = exc.detail
        message = json.dumps(detail) if isinstance(detail, (dict, list)) else str(detail)
        return HttpResponse(f"caused: {message};", status=exc.status_code, content_type=TEXT)
    return None
