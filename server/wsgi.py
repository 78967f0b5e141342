"""The WSGI application: Django, with a direct route for the three hottest Nacos endpoints.

``instance/list``, ``instance/beat`` and ``instance`` carry nearly all client traffic (every SDK
polls, beats and registers). For them we build Django's ``WSGIRequest`` and call the same view
functions directly, skipping the per-request framework work that does nothing for them here: URL
resolution, the request_started/request_finished signals (their receivers reset query logs and
recycle DB connections; these views use the database only through the auth caches, whose
SQLite connections may stay open per thread) and the empty middleware chain. Measured: about a
third of the in-process cost of a beat (issue #2 note). Everything else goes through Django.

Every request's time in this function is observed in ``naming_http_request_duration_seconds``
(``lib.counters``): per hot route and method, one coarse series per facade port
(``route="eureka"``, ``route="airlift"``), and one coarse ``route="other"`` series for the
rest. Cost per request: one ``perf_counter()`` pair and one ``observe()`` on a child resolved
at import (~2 µs; no label lookup per request). For Django routes the time ends when Django
returns its response (bodies here are built in full, not streamed).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django_application = get_wsgi_application()

from facades.nacos_v1 import handlers as views  # noqa: E402 - needs the app registry that get_wsgi_application set up
from facades.nacos_v1.forward import DeferredResponse  # noqa: E402
from lib.blocking import Complete, Deferred, PeerReply  # noqa: E402
from lib.counters import REQUEST_DURATION  # noqa: E402
from lib.http import Waiting  # noqa: E402
from lib.watching import Held  # noqa: E402
from server.serving import Answer, Rendered  # noqa: E402

HOT_ROUTES: dict[str, Callable[..., Any]] = {
    "/nacos/v1/ns/instance/list": views.instance_list,
    "/nacos/v1/ns/instance/beat": views.instance_beat,
    "/nacos/v1/ns/instance": views.instance,
    # Not hot, but a password-guessing flood lands here: refusing it must cost as little as
    # possible (issue #8); the view touches the database only on the password-hash pool.
    "/nacos/v1/auth/login": views.login,
}


# Served on the event-loop thread (``server/serving.py``): memory work only, except where
# ``lib.blocking.may_block`` sends the request to a worker. The login hashes a password: a worker.
LOOP_PATHS = frozenset(
    ("/nacos/v1/ns/instance/list", "/nacos/v1/ns/instance/beat", "/nacos/v1/ns/instance")
)

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# The paths each protocol facade owns. A facade's paths are served on its own port only (off
# unless given one: ``runnode --eureka-port``/``--airlift-port``), and its port serves nothing
# else: a Nacos client pointed at the Eureka port, or the reverse, gets a 404, not a surprise.
FACADE_PATHS: dict[str, tuple[str, ...]] = {"eureka": ("/eureka/",), "airlift": ("/v1/",)}
_ALL_FACADE_PATHS = tuple(p for paths in FACADE_PATHS.values() for p in paths)


def misplaced(facade: str, path: str) -> bool:
    """Whether ``path`` is not served on the port of ``facade`` ("" for the main port)."""
    slashed = path if path.endswith("/") else path + "/"
    if facade:
        return not slashed.startswith(FACADE_PATHS[facade])
    return slashed.startswith(_ALL_FACADE_PATHS)


def _not_here(start_response: Callable[..., Any], path: str) -> Iterable[bytes]:
    body = f"caused: no such path on this port: {path};".encode()
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class _Timers(dict[str, Any]):
    """The histogram children of one route, by method, resolved on first use (so an unused
    method exports no empty series) and cached; a method outside ``METHODS`` counts as
    ``method="other"``, so a client inventing methods cannot create series."""

    def __init__(self, route: str) -> None:
        super().__init__()
        self.route = route

    def __missing__(self, method: str) -> Any:
        key = method if method in METHODS else "other"
        child = REQUEST_DURATION.labels(self.route, key)
        if key == method:
            self[method] = child  # a racing thread stores the same child: labels() is locked
        return child


def _parts(response: HttpResponse) -> Rendered:
    return (
        f"{response.status_code} {response.reason_phrase}",
        list(response.items()),
        response.content,
    )


def _rendered(
    complete: Complete[HttpResponse], reply: PeerReply | None, reason: str, refused: bool
) -> Rendered:
    return _parts(complete(reply, reason, refused))


_HOT: dict[str, tuple[Callable[..., Any], _Timers]] = {
    path: (view, _Timers(path)) for path, view in HOT_ROUTES.items()
}
_OTHER = _Timers("other")
# A facade's requests are timed apart (``route="eureka"``, ``route="airlift"``): a Eureka
# fleet's renewals would otherwise drown the main port's "other" series.
_FACADE_TIMERS = {facade: _Timers(facade) for facade in FACADE_PATHS}
_clock = time.perf_counter


def _waiting(response: Waiting) -> Answer:
    """A held fetch or an event stream (``lib.watching``), for the server to carry out. Not a
    WSGI body; only ``server.serving`` calls this application."""
    answer = response.answer
    if isinstance(answer, Held):
        return answer.map(_parts)
    return answer


def application(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes] | Answer:
    started = _clock()
    path = environ.get("PATH_INFO", "")
    facade = environ.get("naming.facade", "")
    if misplaced(facade, path):
        return _not_here(start_response, path)
    hot = _HOT.get(path)
    if hot is None:
        try:
            result = django_application(environ, start_response)
            if isinstance(result, Waiting):
                result.close()  # Django's request_finished: the request is over for Django
                return _waiting(result)
            return result
        finally:
            others = _FACADE_TIMERS[facade] if facade else _OTHER
            others[environ.get("REQUEST_METHOD", "")].observe(_clock() - started)
    view, timers = hot
    try:
        response = view(WSGIRequest(environ))
        if isinstance(response, DeferredResponse):
            # A forward started on the event loop: the server sends it and answers later. Not a
            # WSGI body; only ``server.serving`` calls this application on its loop.
            deferred = response.deferred
            return Deferred(deferred.call, functools.partial(_rendered, deferred.complete))
        if isinstance(response, Waiting):
            return _waiting(response)
        status, headers, body = _parts(response)
        start_response(status, headers)
        return [body]
    finally:
        timers[environ.get("REQUEST_METHOD", "")].observe(_clock() - started)
