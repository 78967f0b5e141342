"""The WSGI application: Django, with a direct route for the three hottest Nacos endpoints.

``instance/list``, ``instance/beat`` and ``instance`` carry nearly all client traffic (every SDK
polls, beats and registers). For them we build Django's ``WSGIRequest`` and call the same view
functions directly, skipping the per-request framework work that does nothing for them here: URL
resolution, the request_started/request_finished signals (their receivers reset query logs and
recycle DB connections; these views use the database only through the auth caches, whose
SQLite connections may stay open per thread) and the empty middleware chain. Measured: about a
third of the in-process cost of a beat (issue #2 note). Everything else goes through Django.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django_application = get_wsgi_application()

from facades.nacos_v1 import handlers as views  # noqa: E402 - needs the app registry that get_wsgi_application set up

HOT_ROUTES: dict[str, Callable[..., Any]] = {
    "/nacos/v1/ns/instance/list": views.instance_list,
    "/nacos/v1/ns/instance/beat": views.instance_beat,
    "/nacos/v1/ns/instance": views.instance,
    # Not hot, but a password-guessing flood lands here: refusing it must cost as little as
    # possible (issue #8); the view touches the database only on the password-hash pool.
    "/nacos/v1/auth/login": views.login,
}


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    view = HOT_ROUTES.get(environ.get("PATH_INFO", ""))
    if view is None:
        return django_application(environ, start_response)  # type: ignore[no-any-return]
    response = view(WSGIRequest(environ))
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [response.content]
