"""The console's plumbing: who is looking, the per-view security wrappers, rendering.

Every console view is a :func:`console_view`: the session, CSRF, CSP, ``X-Frame-Options`` and
``Cache-Control: no-store`` are applied per view (``decorator_from_middleware``) rather than as
global middleware, so the API's hot endpoints pay nothing for them. The session (a signed
cookie, ``nacos_session``) holds the user's access token, which is re-validated through the
Authenticator on every request: a logout, a password change or a deletion on any member ends
the session on every member. Errors of the core (:class:`lib.errors.NamingError`) render as a
visible message on the page with their 4xx status, never a 500.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from csp.middleware import CSPMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils.decorators import decorator_from_middleware
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from accounts.auth import (
    Action,
    Identity,
    Resource,
    authorize,
    can,
    installed,
)
from accounts.auth import (
    readable_namespaces as readable_ids,
)
from facades.nacos_v1.context import current
from lib.errors import Forbidden, NamingError
from naming import audit
from naming.domain import namespace_or_default
from naming.operations import NamespaceInfo, NamingOperations

log = logging.getLogger(__name__)

ROOT = "/nacos/console/"
LOGIN = ROOT + "login"
HOME = ROOT + "services"
TOKEN = "token"  # the session key holding the user's access token
PAGE_SIZES = (10, 20, 30, 50, 100)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a console request. ``identity`` is None when auth is off (Nacos 2.x:
    the console then works without a login and everything is allowed)."""

    identity: Identity | None
    address: str

    @property
    def auth_on(self) -> bool:
        return self.identity is not None

    @property
    def username(self) -> str:
        return self.identity.username if self.identity is not None else ""

    @property
    def is_admin(self) -> bool:
        return self.identity is None or self.identity.global_admin


class LoginNeeded(Exception):
    def __init__(self, expired: bool) -> None:
        super().__init__("login needed")
        self.expired = expired


def address_of(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


def viewer_of(request: HttpRequest) -> Viewer:
    """Re-validates the session's token (the Authenticator caches the decision briefly)."""
    auth = installed()
    address = address_of(request)
    if auth is None:
        return Viewer(None, address)
    token = request.session.get(TOKEN)
    if not isinstance(token, str) or not token:
        raise LoginNeeded(expired=False)
    try:
        identity = auth.authenticate(token, None, None, None, address)
    except Forbidden:
        request.session.flush()
        raise LoginNeeded(expired=True) from None
    return Viewer(identity, address)


# -- the one authorization seam and the one audit seam ------------------------------------------


def allow(
    viewer: Viewer, action: Action, namespace: str, group: str = "*", service: str = "*"
) -> None:
    """Raises Forbidden (403 on the page) when the viewer may not act on the resource."""
    authorize(viewer.identity, action, Resource.naming(namespace, group, service))


def may(
    viewer: Viewer, action: Action, namespace: str, group: str = "*", service: str = "*"
) -> bool:
    return can(viewer.identity, action, Resource.naming(namespace, group, service))


def allow_console(viewer: Viewer, page: str) -> None:
    """The admin-only pages and their writes (Nacos's ``console/<page>`` resources)."""
    authorize(viewer.identity, Action.WRITE, Resource.console(page))


@contextlib.contextmanager
def acting(request: HttpRequest, viewer: Viewer, action: str) -> Iterator[None]:
    """Every core write of the console runs inside this: the audit trail's actor."""
    with audit.acting(
        user=viewer.username or "anonymous",
        address=address_of(request),
        via=audit.VIA_CONSOLE,
        reason=f"console: {action}",
    ):
        yield


def ops() -> NamingOperations:
    return current().operations


# -- request data ---------------------------------------------------------------------------------


def namespace_of(request: HttpRequest) -> str:
    """``?namespace=`` (blank: public), validated (a malformed id is a 400 on the page)."""
    return namespace_or_default(request.GET.get("namespace") or request.POST.get("namespace"))


def url(path: str, query: Mapping[str, Any] | None = None) -> str:
    clean = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return path + ("?" + urlencode(clean) if clean else "")


def safe_next(request: HttpRequest, target: str | None) -> str:
    if (
        target
        and target.startswith("/nacos/")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=False
        )
    ):
        return target
    return HOME


# -- rendering ------------------------------------------------------------------------------------


def render_page(
    request: HttpRequest,
    viewer: Viewer | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """A page inside the layout: the header needs the viewer and the current namespace."""
    ctx: dict[str, Any] = {
        "viewer": viewer,
        "auth_on": installed() is not None,
        "menu_admin": viewer is not None and viewer.auth_on and viewer.is_admin,
    }
    ctx.update(context or {})
    if "namespace" in ctx and "namespace_name" not in ctx:
        ctx["namespace_name"] = namespace_label(str(ctx["namespace"]))
    return render(request, template, ctx, status=status)


def namespace_label(namespace: str) -> str:
    """The namespace's display name (its id for an implicit one)."""
    for info in ops().namespaces():
        if info.id == namespace:
            return info.name
    return namespace


def visible_namespaces(viewer: Viewer) -> list[NamespaceInfo]:
    """Every namespace the viewer may read, public first: the switcher and the namespace page
    offer only these (Nacos listed every namespace to everyone)."""
    infos = ops().namespaces()
    shown = set(readable_ids(viewer.identity, [i.id for i in infos]))
    return [i for i in infos if i.id in shown]


def confirm_page(
    request: HttpRequest,
    viewer: Viewer,
    namespace: str | None,
    question: str,
    action: str,
    hidden: Mapping[str, str],
    cancel: str,
) -> HttpResponse:
    """A question before a delete: a page of its own, so it works without JavaScript."""
    context: dict[str, Any] = {
        "question": question,
        "action": action,
        "hidden": sorted(hidden.items()),
        "cancel": cancel,
    }
    if namespace is not None:
        context["namespace"] = namespace
    return render_page(request, viewer, "console/confirm.html", context)


def error_page(request: HttpRequest, viewer: Viewer | None, exc: NamingError) -> HttpResponse:
    if getattr(request, "htmx", False):
        # A polled fragment: keep the page, show the message in place of the fragment.
        return render(request, "console/_error.html", {"error": exc.message}, status=exc.status)
    return render_page(
        request, viewer, "console/error.html", {"error": exc.message}, status=exc.status
    )


def to_login(request: HttpRequest, expired: bool) -> HttpResponse:
    query: dict[str, str] = {}
    htmx = getattr(request, "htmx", None)
    if htmx:
        # A refresh of part of a page: come back to the page, not to the fragment.
        query["next"] = htmx.current_url_abs_path or HOME
    elif request.method == "GET":
        query["next"] = request.get_full_path()
    if expired:
        query["expired"] = "1"
    target = url(LOGIN, query)
    if htmx:
        return HttpResponseClientRedirect(target)
    return HttpResponseRedirect(target)


# -- the per-view wrappers ----------------------------------------------------------------------

_with_session = decorator_from_middleware(SessionMiddleware)
_with_csp = decorator_from_middleware(CSPMiddleware)

View = Callable[[HttpRequest], HttpResponseBase]
Handler = Callable[[HttpRequest, Viewer], HttpResponse]


def protect(view: View) -> View:
    """Session outermost (CSRF reads its token from the session), then CSRF; CSP and the frame
    and cache headers also cover a CSRF refusal."""
    inner = never_cache(xframe_options_deny(view))
    wrapped: View = _with_csp(_with_session(csrf_protect(inner)))
    return wrapped


def with_htmx(request: HttpRequest) -> None:
    request.htmx = HtmxDetails(request)  # type: ignore[attr-defined]


def console_view(*methods: str) -> Callable[[Handler], View]:
    """A console page or action: signed-in viewer (or auth off), errors as visible messages."""
    allowed = frozenset(methods or ("GET",))

    def decorate(handler: Handler) -> View:
        def view(request: HttpRequest) -> HttpResponse:
            with_htmx(request)
            try:
                viewer = viewer_of(request)
            except LoginNeeded as exc:
                return to_login(request, exc.expired)
            try:
                if request.method not in allowed:
                    response = render_page(
                        request,
                        viewer,
                        "console/error.html",
                        {"error": f"{request.method} is not allowed here"},
                        status=405,
                    )
                    response["Allow"] = ", ".join(sorted(allowed))
                    return response
                return handler(request, viewer)
            except NamingError as exc:
                return error_page(request, viewer, exc)
            except Exception:
                log.exception("console error on %s %s", request.method, request.path)
                return render_page(
                    request, viewer, "console/error.html", {"error": "internal error"}, 500
                )

        functools.update_wrapper(view, handler)
        return protect(view)

    return decorate


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a cross-site or stale form post, refused with a page."""
    return render(
        request,
        "console/error.html",
        {"error": "this form has expired or came from another site; reload the page and retry"},
        status=403,
    )
