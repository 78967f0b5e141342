"""The Eureka routes, relative to each base path that serves them (``server/urls.py`` mounts
them under ``/eureka/v2/`` (Netflix), ``/eureka/`` (Spring Cloud) and the peer-only forward
path). Both slash forms are routes of their own: clients use both, and a redirect is no
answer to a Eureka client. ``apps/delta`` comes before ``apps/<app>``."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpResponse

from facades.eureka import views

Route = tuple[str, Callable[..., HttpResponse]]

_ROUTES: list[Route] = [
    ("apps", views.apps),
    ("apps/delta", views.delta),
    ("apps/<str:app>", views.application),
    ("apps/<str:app>/<str:instance_id>", views.instance),
    ("apps/<str:app>/<str:instance_id>/status", views.status),
    ("apps/<str:app>/<str:instance_id>/metadata", views.metadata),
    ("instances/<str:instance_id>", views.instance_by_id),
    ("vips/<str:vip>", views.vips),
    ("svips/<str:svip>", views.svips),
]

ROUTES: list[Route] = [(r + slash, view) for r, view in _ROUTES for slash in ("", "/")]

# Where the routes are served: Netflix's WAR path, Spring Cloud's, and the path a member
# forwards a write to on the owner's main port (signed requests only; ``views.PEER_PATH``).
PREFIXES = ("eureka/v2/", "eureka/", views.PEER_PATH.lstrip("/"))
