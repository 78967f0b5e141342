"""Template helpers of the console."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from django import template

register = template.Library()


@register.filter
def urlencode_query(query: Mapping[str, object]) -> str:
    """A dict as a query string (autoescaping then writes ``&`` as ``&amp;`` in attributes)."""
    return urlencode({k: str(v) for k, v in query.items()})
