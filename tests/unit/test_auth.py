from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import jwt
import pytest

from accounts.auth import (
    Authenticator,
    FailureLog,
    HashingPool,
    Identity,
    LoginLimits,
    LoginThrottle,
    UserDirectory,
)
from lib.errors import Forbidden, Unavailable

KEY = b"k" * 32


class FakeUsers(UserDirectory):
    def __init__(self) -> None:
        self.password_checks = 0
        self.users = {"nacos": ("pw", True), "dev": ("devpw", False)}
        self.generations: dict[str, int] = {}
        self.hash_threads: set[str] = set()

    def check_password(self, username: str, password: str) -> Identity | None:
        self.password_checks += 1
        self.hash_threads.add(threading.current_thread().name)
        entry = self.users.get(username)
        if entry is None or entry[0] != password:
            return None
        return Identity(username, entry[1], self.generations.get(username, 0))

    def lookup(self, username: str) -> Identity | None:
        entry = self.users.get(username)
        if entry is None:
            return None
        return Identity(username, entry[1], self.generations.get(username, 0))

    def revoke_tokens(self, username: str) -> None:
        self.generations[username] = self.generations.get(username, 0) + 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _close_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Authenticator a test builds gets its hashing pool shut down afterwards."""
    built: list[Authenticator] = []
    original = Authenticator.__init__

    def init(self: Authenticator, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(Authenticator, "__init__", init)
    yield
    for auth in built:
        auth.close()


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


def test_password_checks_run_on_the_hash_pool_not_the_caller():
    users = FakeUsers()
    auth = Authenticator(KEY, users)
    auth.login("nacos", "pw")
    with pytest.raises(Forbidden):
        auth.login("nacos", "bad")
    assert users.hash_threads and all(n.startswith("password-hash") for n in users.hash_threads)
    assert auth.stats()["hashed"] == 2 and auth.stats()["failedLogins"] == 1


def test_a_full_hash_pool_refuses_at_once_with_503():
    release = threading.Event()
    started = threading.Event()

    class SlowUsers(FakeUsers):
        def check_password(self, username: str, password: str) -> Identity | None:
            started.set()
            release.wait(10)
            return None

    auth = Authenticator(KEY, SlowUsers(), pool=HashingPool(workers=1, queue=0, nice=0))

    def hold_the_only_slot() -> None:
        with pytest.raises(Forbidden):
            auth.login("a", "b")

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    try:
        assert started.wait(10)
        began = time.monotonic()
        with pytest.raises(Unavailable, match="too many login attempts in progress"):
            auth.login("nacos", "pw")
        assert time.monotonic() - began < 1.0  # refused, not queued behind the slow check
        assert auth.stats()["hashRejected"] == 1
    finally:
        release.set()
        holder.join(10)
    assert auth.stats()["hashInFlight"] == 0


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "nacos", "gen": 0},  # no exp: was a KeyError (500)
        {"sub": "nacos", "exp": 2**40},  # no gen: issued before generations
        {"exp": 2**40, "gen": 0},  # no sub
        {"sub": "nacos", "exp": 2**40, "gen": "0"},
        {"sub": "nacos", "exp": 2**40, "gen": True},
        {"sub": ["nacos"], "exp": 2**40, "gen": 0},
        {"sub": "nacos", "exp": "soon", "gen": 0},
    ],
)
def test_tokens_with_missing_or_malformed_claims_are_invalid(claims):
    auth = Authenticator(KEY, FakeUsers())
    with pytest.raises(Forbidden, match="token invalid!"):
        auth.authenticate(None, jwt.encode(claims, KEY, "HS256"), None, None)


def test_revoking_a_generation_refuses_old_tokens_and_cached_credentials():
    users = FakeUsers()
    clock = Clock()
    auth = Authenticator(KEY, users, clock=clock)
    old, _ = auth.login("dev", "devpw")
    assert auth.authenticate(None, None, "dev", "devpw").username == "dev"
    auth.logout("dev")  # this member: immediate
    with pytest.raises(Forbidden, match="token invalid!"):
        auth.authenticate(None, old, None, None)
    fresh, identity = auth.login("dev", "devpw")
    assert identity.generation == 1
    assert auth.authenticate(fresh, None, None, None).username == "dev"
    # A bump this Authenticator was not told about (another process on the same database)
    # takes effect once its user cache entry expires, for tokens and cached credentials alike.
    checks = users.password_checks
    users.revoke_tokens("dev")
    assert auth.authenticate(fresh, None, None, None).username == "dev"
    clock.now += 6
    with pytest.raises(Forbidden, match="token invalid!"):
        auth.authenticate(fresh, None, None, None)
    assert auth.authenticate(None, None, "dev", "devpw").generation == 2
    assert users.password_checks == checks + 1  # re-verified, not served from the cache


def test_throttle_locks_a_user_only_from_the_failing_address():
    clock = Clock()
    auth = Authenticator(
        KEY, FakeUsers(), limits=LoginLimits(max_failures=3, max_address_failures=10), clock=clock
    )
    for _ in range(3):
        with pytest.raises(Forbidden, match="unknown user!"):
            auth.login("nacos", "bad", "10.0.0.1")
    with pytest.raises(Forbidden, match=r"for user 'nacos' from 10\.0\.0\.1, try again"):
        auth.login("nacos", "pw", "10.0.0.1")
    with pytest.raises(Forbidden, match="too many failed logins"):
        auth.authenticate(None, None, "nacos", "pw", "10.0.0.1")  # per-request credentials too
    assert auth.login("nacos", "pw", "10.0.0.2")[1].username == "nacos"
    assert auth.login("dev", "devpw", "10.0.0.1")[1].username == "dev"
    clock.now += 61
    assert auth.login("nacos", "pw", "10.0.0.1")[1].username == "nacos"


def test_throttle_locks_an_address_spraying_user_names_and_lockouts_double():
    clock = Clock()
    throttle = LoginThrottle(
        LoginLimits(max_failures=100, max_address_failures=4, lockout_s=10), clock
    )
    assert [throttle.failed(f"u{i}", "10.0.0.9")[1] for i in range(4)] == [0, 0, 0, 10]
    with pytest.raises(Forbidden, match=r"from 10\.0\.0\.9, try again in 11 s"):
        throttle.check("anyone", "10.0.0.9")
    throttle.check("anyone", "10.0.0.8")
    clock.now += 11
    throttle.check("anyone", "10.0.0.9")
    assert [throttle.failed(f"v{i}", "10.0.0.9")[1] for i in range(4)][-1] == 20
    assert throttle.lockouts == 2 and throttle.throttled == 1


def test_throttle_memory_is_bounded():
    clock = Clock()
    throttle = LoginThrottle(LoginLimits(max_entries=100), clock)
    for i in range(1000):
        throttle.failed("x", f"10.1.{i // 256}.{i % 256}")
        clock.now += 0.001
    assert len(throttle) <= 100
    # The most recent failures are the ones kept.
    assert throttle.failed("x", "10.1.3.231")[0] == 2


def test_failed_logins_are_logged_but_rate_limited(caplog: pytest.LogCaptureFixture):
    clock = Clock()
    failures = FailureLog(burst=5, period_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="accounts.auth"):
        for n in range(1, 9):
            failures.failed("nacos", "10.0.0.1", n, 0.0)  # logged at 1, 2, 4, 8
        for i in range(10):
            failures.failed(f"u{i}", "10.0.0.2", 1, 0.0)
        clock.now += 10
        failures.failed("nacos", "10.0.0.1", 5, 60.0)  # a lockout is always worth a line
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "failed login for user 'nacos' from 10.0.0.1 (1 in the window)"
    assert len(lines) == 6
    assert failures.suppressed == 9
    assert lines[-1].endswith("; locked for 60 s [9 failed-login lines suppressed]")
