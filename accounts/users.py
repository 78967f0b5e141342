"""User administration (``/nacos/v1/auth/users``), as the Nacos console calls it.

Low-traffic admin endpoints, so they use Django REST framework the ordinary way: an
authentication class over our token/credential check, a permission for global admins, and
serializers that validate once into typed data. Errors render in the Nacos shape through
the edge's DRF exception handler (``facades.nacos_v1.api.drf_exception_handler``). Password
hashes are never returned (Nacos returns them; we see no reason to).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, permissions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audited import Audited
from accounts.auth import Identity, installed
from accounts.directory import (
    ADMIN_USERNAME,
    MAX_PASSWORD,
    MIN_PASSWORD,
    USERNAME_RE,
    check_action,
    normalize_resource,
    service,
)
from lib.errors import Conflict, Forbidden
from naming.parsing import JAVA_INT_MAX


class NacosAuthentication(BaseAuthentication):
    """Bearer header or ``accessToken``. On these endpoints ``username``/``password`` name the
    user being managed, so they are never read as the caller's credentials."""

    def authenticate(self, request: Request) -> tuple[Identity, None]:
        auth = installed()
        if auth is None:
            return Identity("anonymous", True), None
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header.startswith("Bearer ") else None
        try:
            identity = auth.authenticate(
                bearer, request.query_params.get("accessToken"), None, None
            )
        except Forbidden as exc:
            raise exceptions.PermissionDenied(exc.message) from None
        return identity, None


class IsGlobalAdmin(permissions.BasePermission):
    """Users, roles and permissions are ``console/...`` resources: admin only (Nacos §2.3)."""

    message = "authorization failed!"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Identity) and request.user.global_admin


class IsAdminOrSelf(IsGlobalAdmin):
    """A password change: an admin for anyone, a user for itself (Nacos's resource
    ``console/user/password`` then its "self or admin" check)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if super().has_permission(request, view):
            return True
        if request.method != "PUT" or not isinstance(request.user, Identity):
            return False
        return _fields(request).get("username") == request.user.username


# Input-only serializers: they validate parameters and never wrap an instance (DRF's generic
# parameter is the instance type; DRF 3.18 accepts the subscription at runtime).
InputSerializer = serializers.Serializer[None]


class PageSerializer(InputSerializer):
    # Bounded: a page past 2^31 overflows SQLite's OFFSET (was Django's HTML 500).
    pageNo = serializers.IntegerField(min_value=1, max_value=JAVA_INT_MAX, default=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class NewUserSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)
    password = serializers.CharField(
        min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, trim_whitespace=False
    )


class PasswordSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)
    newPassword = serializers.CharField(
        min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, trim_whitespace=False
    )


class UsernameSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)


def _fields(request: Request) -> dict[str, Any]:
    body = request.data
    if not isinstance(body, Mapping):  # a JSON array or scalar body
        raise exceptions.ValidationError("request body must be form fields or a JSON object")
    return {
        **request.query_params.dict(),
        **(body.dict() if hasattr(body, "dict") else dict(body)),
    }


def _validated(serializer_class: type[InputSerializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=_fields(request))
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _result(message: str) -> Response:
    return Response({"code": 200, "message": message, "data": None})


class SearchSerializer(PageSerializer):
    """Nacos 2.x list filters: ``search=accurate`` (exact) or ``blur`` (substring; ``*`` in
    the text is ignored, as the 2.x UI wraps the text in ``*``)."""

    search = serializers.ChoiceField(["accurate", "blur"], default="accurate")
    username = serializers.CharField(max_length=64, required=False, allow_blank=True)
    role = serializers.CharField(max_length=64, required=False, allow_blank=True)
    resource = serializers.CharField(max_length=255, required=False, allow_blank=True)
    action = serializers.CharField(max_length=2, required=False, allow_blank=True)


def _matches(value: str, wanted: str, blur: bool) -> bool:
    if not wanted:
        return True
    wanted = wanted.strip("*") if blur else wanted
    return wanted in value if blur else value == wanted


def _page(items: list[dict[str, Any]], page: Mapping[str, Any]) -> Response:
    total = len(items)
    start = (page["pageNo"] - 1) * page["pageSize"]
    return Response(
        {
            "totalCount": total,
            "pageNumber": page["pageNo"],
            "pagesAvailable": (total + page["pageSize"] - 1) // page["pageSize"],
            "pageItems": items[start : start + page["pageSize"]],
        }
    )


class PartSerializer(InputSerializer):
    username = serializers.CharField(max_length=64, required=False, allow_blank=True)
    role = serializers.CharField(max_length=64, required=False, allow_blank=True)


class UserSearchView(APIView):
    """``GET /nacos/v1/auth/users/search?username=<part>``: names for the role dialog."""

    authentication_classes = [NacosAuthentication]
    permission_classes = [IsGlobalAdmin]

    def get(self, request: Request) -> Response:
        part = _validated(PartSerializer, request).get("username", "")
        return Response([n for n in service().directory().usernames() if part in n])


class RoleSearchView(APIView):
    """``GET /nacos/v1/auth/roles/search?role=<part>``: role names for the permission dialog."""

    authentication_classes = [NacosAuthentication]
    permission_classes = [IsGlobalAdmin]

    def get(self, request: Request) -> Response:
        part = _validated(PartSerializer, request).get("role", "")
        return Response([r for r in service().directory().role_names() if part in r])


class RoleSerializer(InputSerializer):
    role = serializers.CharField(max_length=64)
    username = serializers.CharField(max_length=64)


class RoleRefSerializer(InputSerializer):
    role = serializers.CharField(max_length=64)
    username = serializers.CharField(max_length=64, required=False, allow_blank=True)


class RolesView(Audited):
    authentication_classes = [NacosAuthentication]
    permission_classes = [IsGlobalAdmin]

    def get(self, request: Request) -> Response:
        query = _validated(SearchSerializer, request)
        blur = query["search"] == "blur"
        items = [
            {"role": role, "username": user}
            for role, user in service().directory().bindings()
            if _matches(user, query.get("username", ""), blur)
            and _matches(role, query.get("role", ""), blur)
        ]
        return _page(items, query)

    def post(self, request: Request) -> Response:
        data = _validated(RoleSerializer, request)
        service().bind_role(data["role"], data["username"])
        return _result("add role ok!")

    def delete(self, request: Request) -> Response:
        data = _validated(RoleRefSerializer, request)
        service().unbind_role(data["role"], data.get("username") or None)
        who = data.get("username") or "all users"
        return _result(f"delete role of user {who} ok!")


class PermissionSerializer(InputSerializer):
    role = serializers.CharField(max_length=64)
    resource = serializers.CharField(max_length=255)
    action = serializers.CharField(max_length=2)


class PermissionsView(Audited):
    authentication_classes = [NacosAuthentication]
    permission_classes = [IsGlobalAdmin]

    def get(self, request: Request) -> Response:
        query = _validated(SearchSerializer, request)
        permissions_ = service().directory().permissions()
        if query.get("resource") and query.get("action"):
            # Nacos 2.x's duplicate check before adding: does an existing rule already cover
            # this one (``rw`` covers ``r`` and ``w``)? Compared in the stored form, so
            # ``public:*:*`` finds ``:*:*``.
            resource = normalize_resource(query["resource"])
            action = check_action(query["action"])
            found = any(
                p.role == query.get("role")
                and p.resource == resource
                and set(action) <= set(p.action)
                for p in permissions_
            )
            return Response({"code": 200, "message": None, "data": found})
        blur = query["search"] == "blur"
        items = [
            {"role": p.role, "resource": p.resource, "action": p.action}
            for p in permissions_
            if _matches(p.role, query.get("role", ""), blur)
        ]
        return _page(items, query)

    def post(self, request: Request) -> Response:
        data = _validated(PermissionSerializer, request)
        service().add_permission(data["role"], data["resource"], data["action"])
        return _result("add permission ok!")

    def delete(self, request: Request) -> Response:
        data = _validated(PermissionSerializer, request)
        service().remove_permission(data["role"], data["resource"], data["action"])
        return _result("delete permission ok!")


class UsersView(Audited):
    authentication_classes = [NacosAuthentication]
    permission_classes = [IsAdminOrSelf]

    def get(self, request: Request) -> Response:
        query = _validated(SearchSerializer, request)
        directory = service().directory()
        blur = query["search"] == "blur"
        items = [
            {"username": name, "globalAdmin": directory.is_admin(name)}
            for name in directory.usernames()
            if _matches(name, query.get("username", ""), blur)
        ]
        return _page(items, query)

    def post(self, request: Request) -> Response:
        data = _validated(NewUserSerializer, request)
        service().create_user(data["username"], data["password"])
        return _result("create user ok!")

    def put(self, request: Request) -> Response:
        data = _validated(PasswordSerializer, request)
        service().set_password(data["username"], data["newPassword"])
        return _result("update user ok!")

    def delete(self, request: Request) -> Response:
        data = _validated(UsernameSerializer, request)
        service().delete_user(data["username"])
        return _result("delete user ok!")


class AdminPasswordSerializer(InputSerializer):
    password = serializers.CharField(
        max_length=MAX_PASSWORD, required=False, allow_blank=True, trim_whitespace=False
    )


class AdminView(APIView):
    """``POST /nacos/v1/auth/users/admin`` (Nacos 2.4+): the first admin, for a cluster started
    without one (``NAMING_ADMIN_BOOTSTRAP=false``). Open to anyone while nobody holds
    ``ROLE_ADMIN``, as in Nacos: whoever reaches the console first sets the password, so an
    operator who leaves the bootstrap off must claim it before exposing the port. The password
    is the caller's, or a generated one when blank; the answer shows it this once. Later calls
    get Nacos's HTTP 200 with code 409, and cost no hashing (refused before the hash)."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [permissions.AllowAny]

    def post(self, request: Request) -> Response:
        password = _validated(AdminPasswordSerializer, request).get("password") or (
            secrets.token_urlsafe(12)
        )
        try:
            service().create_admin(password)
        except Conflict as exc:  # an admin exists, or another caller won the race
            return Response({"code": 409, "message": None, "data": exc.message})
        return Response({"username": ADMIN_USERNAME, "password": password})
