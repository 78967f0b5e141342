"""Login, logout and the console's entry point (``/nacos/``)."""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.auth import installed
from accounts.directory import ADMIN_USERNAME
from accounts.directory import service as accounts
from facades.console.web import (
    HOME,
    LOGIN,
    ROOT,
    TOKEN,
    LoginNeeded,
    Viewer,
    acting,
    address_of,
    protect,
    render_page,
    safe_next,
    url,
    viewer_of,
    with_htmx,
)
from lib.errors import Conflict, NamingError

EXPIRED = "session expired, please log in again"
INIT = ROOT + "init"


def _admin_missing() -> bool:
    """Auth is on and nobody holds ROLE_ADMIN (started with NAMING_ADMIN_BOOTSTRAP=false)."""
    return installed() is not None and not accounts().directory().has_admin()


def _root(request: HttpRequest) -> HttpResponse:
    """``/nacos/`` (and ``/nacos``): the service list, or the login page first (or, before
    there is an admin, the first-run page)."""
    return HttpResponseRedirect(INIT if _admin_missing() else HOME)


root = protect(_root)


def _login(request: HttpRequest) -> HttpResponse:
    with_htmx(request)
    auth = installed()
    target = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if auth is None:
        return HttpResponseRedirect(target)  # auth off: nothing to log in to
    if request.method == "GET":
        if _admin_missing():
            return HttpResponseRedirect(INIT)
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


def _first_admin(request: HttpRequest) -> HttpResponse:
    """``/nacos/console/init`` (Nacos 2.4+, nacos#11957): the ``nacos`` admin's password, while
    nobody holds ROLE_ADMIN; a blank password is generated and shown this once. Open to anyone
    then, as the API's ``POST /nacos/v1/auth/users/admin`` is; once an admin exists the page is
    gone (404), and of two people racing, the replicated change lets only one win."""
    with_htmx(request)
    if not _admin_missing():
        return _init_gone(request)
    if request.method not in ("GET", "POST"):
        return render_page(request, None, "console/init.html", {"error": "use the form"}, 405)
    if request.method == "GET":
        return render_page(request, None, "console/init.html")
    password = request.POST.get("password", "")
    if password != request.POST.get("repeat", ""):
        differ = {"error": "the two passwords do not match"}
        return render_page(request, None, "console/init.html", differ, status=400)
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    try:
        with acting(request, Viewer(None, address_of(request)), "first admin"):
            accounts().create_admin(password)
    except Conflict:  # someone else was first
        return _init_gone(request)
    except NamingError as exc:
        refused = {"error": exc.message}
        return render_page(request, None, "console/init.html", refused, status=exc.status)
    context: dict[str, object] = {
        "done": True,
        "username": ADMIN_USERNAME,
        "generated": password if generated else "",
    }
    return render_page(request, None, "console/init.html", context)


def _init_gone(request: HttpRequest) -> HttpResponse:
    context = {"error": "the administrator is already set up: log in instead", "gone": True}
    return render_page(request, None, "console/init.html", context, status=404)


first_admin = protect(_first_admin)
