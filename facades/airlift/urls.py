"""The airlift discovery paths, each with and without a trailing slash (no redirects: Django's
``APPEND_SLASH`` is off, and airlift clients would not follow one for a PUT). Served on the
airlift port only (``server/wsgi.py`` ``FACADE_PATHS``)."""

from collections.abc import Callable

from django.http import HttpResponse
from django.urls import URLPattern, path

from facades.airlift import handlers


def _both(route: str, view: Callable[..., HttpResponse]) -> list[URLPattern]:
    return [path(route, view), path(route + "/", view)]


airlift_patterns: list[URLPattern] = [
    *_both("v1/service", handlers.all_services),
    *_both("v1/service/<str:kind>", handlers.services_of_type),
    *_both("v1/service/<str:kind>/<str:pool>", handlers.services_of_pool),
    *_both("v1/announcement/static", handlers.statics),
    *_both("v1/announcement/static/<str:service_id>", handlers.static),
    *_both("v1/announcement/<str:node_id>", handlers.announcement),
    *_both("v1/announcement/<str:node_id>/<str:kind>", handlers.announcement_type),
]
