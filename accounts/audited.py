"""Attribution of the writes made by the DRF account views (``/nacos/v1/auth/...``) for the
audit trail (``naming.audit``): the Nacos v1 decorator does this for the naming API; these views
are DRF's, so the actor is set once DRF has authenticated the caller and reset with the response.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import Identity
from naming import audit


class Audited(APIView):
    """Base of a DRF view whose writes are recorded with the authenticated caller."""

    _audit_scope: audit.ActingScope | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        identity = request.user
        user = identity.username if isinstance(identity, Identity) else "anonymous"
        address = str(request.META.get("REMOTE_ADDR", ""))
        scope = audit.acting(user, address, audit.VIA_API, f"{request.method} {request.path}")
        scope.__enter__()
        self._audit_scope = scope

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # Called on every way out of DRF's dispatch, errors included (the project's exception
        # handler always answers), so the worker thread never keeps this request's actor.
        scope, self._audit_scope = self._audit_scope, None
        if scope is not None:
            scope.__exit__(None, None, None)
        return super().finalize_response(request, response, *args, **kwargs)
