"""Login, logout and the console's entry point (``/nacos/``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.auth import installed
from facades.console.web import (
    HOME,
    LOGIN,
    TOKEN,
    LoginNeeded,
    address_of,
    protect,
    render_page,
    safe_next,
    url,
    viewer_of,
    with_htmx,
)
from lib.errors import NamingError

EXPIRED = "session expired, please log in again"


def _root(request: HttpRequest) -> HttpResponse:
    """``/nacos/`` (and ``/nacos``): the service list, or the login page first."""
    return HttpResponseRedirect(HOME)


root = protect(_root)


def _login(request: HttpRequest) -> HttpResponse:
    with_htmx(request)
    auth = installed()
    target = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if auth is None:
        return HttpResponseRedirect(target)  # auth off: nothing to log in to
    if request.method == "GET":
        try:
            viewer_of(request)
            return HttpResponseRedirect(target)  # already signed in
        except LoginNeeded:
            pass
        notice = ""
        if request.GET.get("expired"):
            notice = EXPIRED
        elif request.GET.get("out"):
            notice = "you are logged out"
        return render_page(request, None, "console/login.html", {"next": target, "notice": notice})
    if request.method != "POST":
        return render_page(
            request, None, "console/login.html", {"error": "use the form"}, status=405
        )
    username = request.POST.get("username", "").strip()
    password = request.POST.get("password", "")
    context = {"next": target, "username": username}
    if not username or not password:
        context["error"] = "username and password are required"
        return render_page(request, None, "console/login.html", context, status=400)
    try:
        token, _identity = auth.login(username, password, address_of(request))
    except NamingError as exc:
        # "unknown user!" for a wrong password; the throttle's "too many failed logins ...
        # try again in N s" is shown as it is.
        message = exc.message
        if message == "unknown user!":
            message = "invalid username or password"
        context["error"] = message
        return render_page(request, None, "console/login.html", context, status=exc.status)
    request.session.cycle_key()  # a new session for a new login (fixation)
    request.session[TOKEN] = token
    return HttpResponseRedirect(target)


login = protect(_login)


def _logout(request: HttpRequest) -> HttpResponse:
    """POST only (a link could be triggered cross-site). Revokes every token of the user on
    every member (Nacos only forgets it in the browser), then clears the session."""
    with_htmx(request)
    if request.method != "POST":
        return HttpResponseRedirect(HOME)
    auth = installed()
    if auth is not None:
        try:
            viewer = viewer_of(request)
        except LoginNeeded:
            viewer = None
        if viewer is not None and viewer.identity is not None:
            auth.logout(viewer.identity.username)
    request.session.flush()
    return HttpResponseRedirect(url(LOGIN, {"out": "1"}))


logout = protect(_logout)
