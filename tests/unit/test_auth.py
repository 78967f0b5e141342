from __future__ import annotations

import time

import jwt
import pytest

from naming.auth import Authenticator, Identity, UserDirectory
from naming.errors import Forbidden

KEY = b"k" * 32


class FakeUsers(UserDirectory):
    def __init__(self) -> None:
        self.password_checks = 0
        self.users = {"nacos": ("pw", True), "dev": ("devpw", False)}

    def check_password(self, username: str, password: str) -> Identity | None:
        self.password_checks += 1
        entry = self.users.get(username)
        if entry is None or entry[0] != password:
            return None
        return Identity(username, entry[1])

    def lookup(self, username: str) -> Identity | None:
        entry = self.users.get(username)
        return None if entry is None else Identity(username, entry[1])


def test_login_issues_a_token_that_authenticates():
    auth = Authenticator(KEY, FakeUsers())
    token, identity = auth.login("nacos", "pw")
    assert identity.global_admin
    assert auth.authenticate(None, token, None, None).username == "nacos"
    assert auth.authenticate(token, None, None, None).username == "nacos"


def test_bad_credentials_are_unknown_user():
    auth = Authenticator(KEY, FakeUsers())
    with pytest.raises(Forbidden, match="unknown user!"):
        auth.login("nacos", "wrong")
    with pytest.raises(Forbidden, match="user not found!"):
        auth.authenticate(None, None, None, None)


def test_tokens_signed_with_another_key_or_expired_are_refused():
    auth = Authenticator(KEY, FakeUsers())
    forged = jwt.encode({"sub": "nacos", "exp": int(time.time()) + 60}, b"x" * 32, "HS256")
    with pytest.raises(Forbidden, match="token invalid!"):
        auth.authenticate(None, forged, None, None)
    expired = jwt.encode({"sub": "nacos", "exp": int(time.time()) - 5}, KEY, "HS256")
    with pytest.raises(Forbidden, match="token expired!"):
        auth.authenticate(None, expired, None, None)


def test_a_token_of_a_deleted_user_stops_working():
    users = FakeUsers()
    auth = Authenticator(KEY, users)
    token, _ = auth.login("dev", "devpw")
    del users.users["dev"]
    auth.forget_user("dev")
    with pytest.raises(Forbidden):
        auth.authenticate(None, token, None, None)


def test_per_request_credentials_are_verified_once_then_cached():
    users = FakeUsers()
    auth = Authenticator(KEY, users)
    for _ in range(5):
        assert auth.authenticate(None, None, "nacos", "pw").username == "nacos"
    assert users.password_checks == 1
    with pytest.raises(Forbidden):
        auth.authenticate(None, None, "nacos", "other")
