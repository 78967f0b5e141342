"""User administration (``/nacos/v1/auth/users``), as the Nacos console calls it.

Low-traffic admin endpoints, so they use Django REST framework the ordinary way: an
authentication class over our token/credential check, a permission for global admins, and
serializers that validate once into typed data. Errors render in the Nacos shape through
the edge's DRF exception handler (``facades.nacos_v1.api.drf_exception_handler``). Password
hashes are never returned (Nacos returns them; we see no reason to).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework import exceptions, permissions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import ADMIN_USERNAME, Identity, installed, revoke_tokens
from lib.errors import Forbidden, NotFound
from naming.parsing import JAVA_INT_MAX

USERNAME_RE = re.compile(r"\A[A-Za-z0-9_.@-]{1,64}\Z")  # RegexField searches: anchor it
MIN_PASSWORD = 8


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
    message = "authorization failed!"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Identity) and request.user.global_admin


# Input-only serializers: they validate parameters and never wrap an instance (DRF's generic
# parameter is the instance type; DRF 3.18 accepts the subscription at runtime).
InputSerializer = serializers.Serializer[None]


class PageSerializer(InputSerializer):
    # Bounded: a page past 2^31 overflows SQLite's OFFSET (was Django's HTML 500).
    pageNo = serializers.IntegerField(min_value=1, max_value=JAVA_INT_MAX, default=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class NewUserSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)
    password = serializers.CharField(min_length=MIN_PASSWORD, max_length=128, trim_whitespace=False)


class PasswordSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)
    newPassword = serializers.CharField(
        min_length=MIN_PASSWORD, max_length=128, trim_whitespace=False
    )


class UsernameSerializer(InputSerializer):
    username = serializers.RegexField(USERNAME_RE)


def _validated(serializer_class: type[InputSerializer], request: Request) -> dict[str, Any]:
    body = request.data
    if not isinstance(body, Mapping):  # a JSON array or scalar body
        raise exceptions.ValidationError("request body must be form fields or a JSON object")
    data = {
        **request.query_params.dict(),
        **(body.dict() if hasattr(body, "dict") else dict(body)),
    }
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _result(message: str) -> Response:
    return Response({"code": 200, "message": message, "data": None})


class UsersView(APIView):
    authentication_classes = [NacosAuthentication]
    permission_classes = [IsGlobalAdmin]

    def get(self, request: Request) -> Response:
        page = _validated(PageSerializer, request)
        users = get_user_model().objects.order_by("username")
        total = users.count()
        start = (page["pageNo"] - 1) * page["pageSize"]
        items = [
            {"username": u.username, "globalAdmin": u.is_superuser}
            for u in users[start : start + page["pageSize"]]
        ]
        return Response(
            {
                "totalCount": total,
                "pageNumber": page["pageNo"],
                "pagesAvailable": (total + page["pageSize"] - 1) // page["pageSize"],
                "pageItems": items,
            }
        )

    def post(self, request: Request) -> Response:
        data = _validated(NewUserSerializer, request)
        model = get_user_model()
        with transaction.atomic():
            if model.objects.filter(username=data["username"]).exists():
                raise exceptions.ValidationError(f"user '{data['username']}' already exist!")
            model.objects.create_user(data["username"], password=data["password"])
        _forget(data["username"])  # a cached "no such user" must not outlive the creation
        return _result("create user ok!")

    def put(self, request: Request) -> Response:
        data = _validated(PasswordSerializer, request)
        user = get_user_model().objects.filter(username=data["username"]).first()
        if user is None:
            raise NotFound(f"user {data['username']} not exist!")
        with transaction.atomic():
            user.set_password(data["newPassword"])
            user.save(update_fields=["password"])
            revoke_tokens(data["username"])
        _forget(data["username"])
        return _result("update user ok!")

    def delete(self, request: Request) -> Response:
        data = _validated(UsernameSerializer, request)
        if data["username"] == ADMIN_USERNAME:
            raise exceptions.ValidationError("cannot delete admin: nacos")
        with transaction.atomic():
            deleted, _ = get_user_model().objects.filter(username=data["username"]).delete()
            if not deleted:
                raise NotFound(f"user {data['username']} not exist!")
            revoke_tokens(data["username"])
        _forget(data["username"])
        return _result("delete user ok!")


def _forget(username: str) -> None:
    auth = installed()
    if auth is not None:
        auth.forget_user(username)
