"""The console's static files, served by the node itself (no web server, no CDN)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse

from lib.http import respond

# Only the console's own files and htmx are served: nothing else under static/ is public.
_SERVED = ("console/", "django_htmx/htmx-2.min.js", "django_htmx/htmx-2.js")


def static(request: HttpRequest, path: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD") or ".." in path or not path.startswith(_SERVED):
        return respond("not found", 404)
    found = finders.find(path)
    if not isinstance(found, str):
        return respond("not found", 404)
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    # Small files (htmx is the largest, 50 kB): read whole, answered with a Content-Length.
    response = respond(Path(found).read_bytes(), 200, content_type)
    response["Cache-Control"] = "public, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
