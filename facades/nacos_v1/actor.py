"""Who a v1 request acts for, for the audit trail (``naming.audit``).

The edge decorator sets it once per request. A write forwarded to the service's Distro owner
carries the original caller and address in ``X-Naming-Actor``, which the peer signature covers
(``distro.signing``), so the owner records the client, not the forwarding member; the header is
read only from a request whose signature was verified.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qsl, urlencode

from django.http import HttpRequest

from accounts.auth import Identity
from distro import signing
from naming import audit

ANONYMOUS = "anonymous"  # auth is off, or the endpoint is not secured
ACTOR_META = "HTTP_" + signing.ACTOR.upper().replace("-", "_")


def user_of(caller: Identity | None) -> str:
    return ANONYMOUS if caller is None else caller.username


def actor_header(caller: Identity | None, request: HttpRequest) -> dict[str, str]:
    """The header a forwarded request carries (signed with it by the peer transport)."""
    address = str(request.META.get("REMOTE_ADDR", ""))
    return {signing.ACTOR: urlencode({"user": user_of(caller), "address": address})}


def acting_for(
    request: HttpRequest, caller: Identity | None, sender: str = ""
) -> audit.ActingScope:
    """The actor of this request: its caller, or, for a verified forward from ``sender``, the
    caller that member authenticated."""
    # Interned: the audit ring keeps one actor per write, and clients repeat both strings.
    reason = sys.intern(f"{request.method} {request.path}")
    if not sender:
        address = sys.intern(str(request.META.get("REMOTE_ADDR", "")))
        return audit.acting(user_of(caller), address, audit.VIA_API, reason)
    raw = request.META.get(ACTOR_META)
    if raw is None:  # a peer's own call, not a client's forwarded write
        return audit.acting(sender, sender, audit.VIA_PEER, reason)
    fields = dict(parse_qsl(raw, keep_blank_values=True))
    return audit.acting(
        fields.get("user", ANONYMOUS),
        fields.get("address", ""),
        audit.VIA_API,
        f"{reason} (forwarded by {sender})",
    )
