"""Authentication for the Nacos API: login, access tokens, per-request credentials.

Users live in Django's auth tables. Tokens are HS256 JWTs (what Nacos issues) signed with a key
generated at first start and kept in the data dir. Clients present, in Nacos's order: header
``Authorization: Bearer <t>``, parameter ``accessToken``, or ``username`` + ``password`` (the
Node SDK sends these on every request). Password hashing is deliberately slow, so verified
credentials are remembered for a minute under an HMAC of (username, password), never in clear.

Every authenticated user may use the whole naming API (Nacos's RBAC roles are not modelled yet).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from naming.errors import Forbidden
from server.env import write_private

TOKEN_TTL_S = 18000
CREDENTIAL_CACHE_S = 60.0
USER_CACHE_S = 5.0
MAX_CACHE_ENTRIES = 10000
ADMIN_USERNAME = "nacos"


def load_or_create_key(path: Path) -> bytes:
    """The token signing key: 32 random bytes, created once, readable only by the owner."""
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < 32:
            raise ValueError(f"{path} holds a key shorter than 32 bytes")
        return key
    key = secrets.token_bytes(32)
    write_private(path, key.hex())
    return key


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    global_admin: bool


class UserDirectory:
    """The slow, Django-backed part, behind an interface so the cache logic is testable."""

    def check_password(self, username: str, password: str) -> Identity | None:
        from django.contrib.auth import authenticate

        user = authenticate(username=username, password=password)
        if user is None or not user.is_active:
            return None
        return Identity(user.get_username(), bool(user.is_superuser))

    def lookup(self, username: str) -> Identity | None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            return None
        return Identity(user.get_username(), bool(user.is_superuser))


class Authenticator:
    def __init__(self, key: bytes, users: UserDirectory, ttl_s: int = TOKEN_TTL_S) -> None:
        self._key = key
        self._users = users
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._credentials: dict[bytes, tuple[Identity, float]] = {}
        self._known_users: dict[str, tuple[Identity | None, float]] = {}

    def login(self, username: str, password: str) -> tuple[str, Identity]:
        identity = self._check_credentials(username, password)
        now = int(time.time())
        token = jwt.encode({"sub": identity.username, "exp": now + self.ttl_s}, self._key, "HS256")
        return token, identity

    def authenticate(
        self,
        bearer: str | None,
        access_token: str | None,
        username: str | None,
        password: str | None,
    ) -> Identity:
        token = bearer or access_token
        if token:
            return self._check_token(token)
        if username and password:
            return self._check_credentials(username, password)
        raise Forbidden("user not found!")

    def _check_token(self, token: str) -> Identity:
        now = time.time()
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > now:
            username = cached[0]
        else:
            try:
                claims = jwt.decode(token, self._key, algorithms=["HS256"])
            except jwt.ExpiredSignatureError:
                raise Forbidden("token expired!") from None
            except jwt.PyJWTError:
                raise Forbidden("token invalid!") from None
            username = str(claims.get("sub", ""))
            self._remember(self._tokens, token, (username, float(claims["exp"])))
        identity = self._user(username)
        if identity is None:
            raise Forbidden("user not found!")
        return identity

    def _user(self, username: str) -> Identity | None:
        now = time.monotonic()
        cached = self._known_users.get(username)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = self._users.lookup(username)
        self._remember(self._known_users, username, (identity, now + USER_CACHE_S))
        return identity

    def _check_credentials(self, username: str, password: str) -> Identity:
        digest = hmac.new(
            self._key, username.encode() + b"\0" + password.encode(), hashlib.sha256
        ).digest()
        now = time.monotonic()
        cached = self._credentials.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = self._users.check_password(username, password)
        if identity is None:
            raise Forbidden("unknown user!")
        self._remember(self._credentials, digest, (identity, now + CREDENTIAL_CACHE_S))
        return identity

    def _remember(self, cache: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
        with self._lock:
            if len(cache) >= MAX_CACHE_ENTRIES:
                cache.clear()  # crude but bounded; a miss only costs one verification
            cache[key] = value

    def forget_user(self, username: str) -> None:
        with self._lock:
            self._known_users.pop(username, None)
            for digest in [
                d for d, (ident, _) in self._credentials.items() if ident.username == username
            ]:
                self._credentials.pop(digest, None)


def ensure_admin(password: str | None) -> str | None:
    """Create the initial ``nacos`` superuser if missing; return the password when generated."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    if model.objects.filter(username=ADMIN_USERNAME).exists():
        return None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    model.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
    return generated
