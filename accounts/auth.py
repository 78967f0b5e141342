"""Authentication for the Nacos API: login, access tokens, per-request credentials.

Users live in the replicated accounts directory (``accounts.directory``). Tokens are HS256 JWTs
(what Nacos issues) signed with a key derived from the cluster secret (standalone: generated at
first start and kept in the data dir). Clients present, in Nacos's order: header
``Authorization: Bearer <t>``, parameter ``accessToken``, or ``username`` + ``password`` (the
Node SDK sends these on every request). Password hashing is deliberately slow, so verified
credentials are remembered for a minute under an HMAC of (username, password), never in clear.

Hostile clients (issue #8):

* Hashing runs on a small bounded pool (:class:`HashingPool`), never on the request threads: a
  flood of wrong passwords can occupy at most ``workers + queue`` request threads, and further
  attempts are answered 503 at once. Its worker runs at a lower CPU priority, so on a small box
  the request threads win the CPU over the hashing.
* Failures are throttled (:class:`LoginThrottle`) per (user, source address) and per source
  address; a locked pair refuses even the right password from that address only, so the owner
  still logs in from elsewhere. Failed logins are logged, rate-limited.
* Tokens carry ``gen``, the user's token generation (a counter in the replicated
  accounts directory). A
  password change, a deletion or a logout bumps it, which revokes every token issued before.

Authorization (:func:`authorize`) follows Nacos's role model (console.md §2.3): ``ROLE_ADMIN``
passes everything, ``console/...`` resources are admin-only, other roles need a permission whose
resource pattern matches and whose action grants the letter asked for.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import jwt

from accounts.directory import AccountsService, Directory, Permission
from lib.blocking import may_block
from lib.errors import Forbidden, Unavailable

log = logging.getLogger(__name__)

TOKEN_TTL_S = 18000
CREDENTIAL_CACHE_S = 60.0
USER_CACHE_S = 5.0
MAX_CACHE_ENTRIES = 10000
T = TypeVar("T")
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    global_admin: bool
    generation: int = 0  # the user's token generation when this identity was read


class UserDirectory:
    """The users as the authenticator sees them: the replicated directory
    (``accounts.directory``), behind an interface so the cache logic is testable."""

    def __init__(self, accounts: AccountsService) -> None:
        self._accounts = accounts

    def check_password(self, username: str, password: str) -> Identity | None:
        user = self._accounts.directory().verify(username, password)
        if user is None:
            return None
        return Identity(user.username, user.is_admin, user.generation)

    def lookup(self, username: str) -> Identity | None:
        user = self._accounts.directory().user(username)
        if user is None:
            return None
        return Identity(user.username, user.is_admin, user.generation)

    def revoke_tokens(self, username: str) -> None:
        self._accounts.revoke_tokens(username)


# -- the hashing pool -----------------------------------------------------------------------


class HashingPool:
    """Runs password checks on ``workers`` threads with at most ``queue`` waiting.

    Owner: the :class:`Authenticator`; ``runnode`` stops it with :meth:`close` on shutdown
    (queued checks are cancelled, their callers get a 503). A request thread that submits a
    check waits for it; when all ``workers + queue`` slots are taken the attempt is refused at
    once, so a flood holds at most that many request threads. hashlib's PBKDF2 releases the GIL,
    so a worker costs a CPU, not the interpreter; ``nice`` lowers the workers' CPU priority
    (Linux: per thread) so that request threads are scheduled first on a busy box.
    """

    def __init__(self, workers: int = 1, queue: int = 3, nice: int = 5) -> None:
        self.workers = workers
        self.queue = queue
        self._nice = nice
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="password-hash", initializer=self._lower_priority
        )
        self._lock = threading.Lock()
        self.completed = 0
        self.rejected = 0
        self.errors = 0
        self.in_flight = 0

    def _lower_priority(self) -> None:
        if self._nice <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (AttributeError, OSError) as exc:  # not Linux: the bound alone still holds
            log.warning("password-hash thread keeps its CPU priority: %s", exc)

    def run(self, check: Callable[..., T], *args: Any) -> T:
        may_block("password hash")
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.rejected += 1
            raise Unavailable("too many login attempts in progress, try again later")
        with self._lock:
            self.in_flight += 1
        try:
            future = self._executor.submit(check, *args)
        except RuntimeError:  # shut down
            self._release(ok=False)
            raise Unavailable("server is shutting down") from None
        future.add_done_callback(lambda f: self._release(ok=f.cancelled() or not f.exception()))
        try:
            return future.result()
        except Exception as exc:
            if future.cancelled():
                raise Unavailable("server is shutting down") from None
            raise exc

    def _release(self, ok: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.completed += 1
            if not ok:
                self.errors += 1
        self._slots.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- throttling failed logins ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginLimits:
    max_failures: int = 5  # per (user, source address) within the window
    max_address_failures: int = 20  # per source address, any user names
    window_s: float = 60.0
    lockout_s: float = 60.0  # the first lockout; each further one doubles, up to max_lockout_s
    max_lockout_s: float = 3600.0
    max_entries: int = 100_000


class _Counter:
    __slots__ = ("failures", "locked_until", "strikes", "window_start")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.window_start = now
        self.locked_until = 0.0
        self.strikes = 0


class LoginThrottle:
    """Failure counters for (user, address) and for address, with lockouts that double.

    Like django-axes's user-and-address lockout: locking a user everywhere would let anyone
    lock the admin out, so a user is locked only for the addresses that failed, while one
    address trying many user names is locked as a whole (a NAT'd office shares the higher
    address limit). Memory is bounded by ``max_entries``: expired entries go first, then the
    least recently updated ones.
    """

    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], _Counter] = {}
        self.throttled = 0
        self.lockouts = 0

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, username: str, source: str) -> None:
        now = self._clock()
        with self._lock:
            for key, what in (
                (("a", source), f"from {source}"),
                (("u", username, source), f"for user '{username}' from {source}"),
            ):
                entry = self._entries.get(key)
                if entry is not None and entry.locked_until > now:
                    self.throttled += 1
                    wait = int(entry.locked_until - now) + 1
                    raise Forbidden(f"too many failed logins {what}, try again in {wait} s")

    def failed(self, username: str, source: str) -> tuple[int, float]:
        """Count a failure; returns (failures of the pair in the window, new lockout s or 0)."""
        now = self._clock()
        with self._lock:
            pair = self._count(("u", username, source), self.limits.max_failures, now)
            address = self._count(("a", source), self.limits.max_address_failures, now)
        return pair[0], max(pair[1], address[1])

    def succeeded(self, username: str, source: str) -> None:
        with self._lock:
            self._entries.pop(("u", username, source), None)

    def _count(self, key: tuple[str, ...], limit: int, now: float) -> tuple[int, float]:
        entry = self._entries.pop(key, None)  # re-inserted last: the dict stays LRU-ordered
        if entry is None:
            entry = _Counter(now)
        elif now - entry.window_start > self.limits.window_s:
            if now - max(entry.window_start, entry.locked_until) > self.limits.max_lockout_s:
                entry.strikes = 0  # a long quiet spell forgives earlier lockouts
            entry.failures = 0
            entry.window_start = now
        entry.failures += 1
        failures, lockout = entry.failures, 0.0
        if entry.failures >= limit:
            lockout = min(self.limits.lockout_s * 2**entry.strikes, self.limits.max_lockout_s)
            entry.locked_until = now + lockout
            entry.strikes = min(entry.strikes + 1, 30)
            entry.failures = 0
            entry.window_start = now
            self.lockouts += 1
        self._entries[key] = entry
        if len(self._entries) > self.limits.max_entries:
            self._evict(now)
        return failures, lockout

    def _evict(self, now: float) -> None:
        keep = self.limits.max_entries * 9 // 10
        for key in [
            k
            for k, e in self._entries.items()
            if e.locked_until <= now and now - e.window_start > self.limits.window_s
        ]:
            del self._entries[key]
        while len(self._entries) > keep:
            del self._entries[next(iter(self._entries))]


class FailureLog:
    """Failed-login log lines, rate-limited so that an attack cannot flood the log: a pair is
    logged at its 1st, 2nd, 4th, 8th ... failure and at each lockout, and at most ``burst``
    lines go out per ``period_s``; the number suppressed is reported with the next line."""

    def __init__(
        self, burst: int = 20, period_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = burst
        self._period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._period_start = clock()
        self._sent = 0
        self._pending_suppressed = 0
        self.suppressed = 0

    def failed(self, username: str, source: str, failures: int, lockout_s: float) -> None:
        if lockout_s <= 0 and failures & (failures - 1):
            return
        now = self._clock()
        with self._lock:
            if now - self._period_start >= self._period_s:
                self._period_start, self._sent = now, 0
            if self._sent >= self._burst:
                self.suppressed += 1
                self._pending_suppressed += 1
                return
            self._sent += 1
            suppressed, self._pending_suppressed = self._pending_suppressed, 0
        log.warning(
            "failed login for user %r from %s (%d in the window)%s%s",
            username,
            source,
            failures,
            f"; locked for {lockout_s:.0f} s" if lockout_s > 0 else "",
            f" [{suppressed} failed-login lines suppressed]" if suppressed else "",
        )


# -- the authenticator ----------------------------------------------------------------------


class Authenticator:
    def __init__(
        self,
        key: bytes,
        users: UserDirectory,
        ttl_s: int = TOKEN_TTL_S,
        *,
        limits: LoginLimits | None = None,
        pool: HashingPool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = key
        self._users = users
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float, int]] = {}
        self._credentials: dict[bytes, tuple[Identity, float]] = {}
        self._known_users: dict[str, tuple[Identity | None, float]] = {}
        self.pool = pool or HashingPool()
        self.throttle = LoginThrottle(limits or LoginLimits(), clock)
        self.failure_log = FailureLog(clock=clock)
        self.failed_logins = 0

    def login(self, username: str, password: str, source: str = "") -> tuple[str, Identity]:
        identity = self._check_credentials(username, password, source)
        claims = {
            "sub": identity.username,
            "gen": identity.generation,
            "exp": int(time.time()) + self.ttl_s,
        }
        return jwt.encode(claims, self._key, "HS256"), identity

    def authenticate(
        self,
        bearer: str | None,
        access_token: str | None,
        username: str | None,
        password: str | None,
        source: str = "",
    ) -> Identity:
        token = bearer or access_token
        if token:
            return self._check_token(token)
        if username and password:
            return self._check_credentials(username, password, source)
        raise Forbidden("user not found!")

    def logout(self, username: str) -> None:
        """Revokes every token of the user (there is no per-token state to revoke just one)."""
        self._users.revoke_tokens(username)
        self.forget_user(username)

    def _check_token(self, token: str) -> Identity:
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > time.time():
            username, generation = cached[0], cached[2]
        else:
            try:
                claims = jwt.decode(
                    token, self._key, algorithms=["HS256"], options={"require": ["exp", "sub"]}
                )
            except jwt.ExpiredSignatureError:
                raise Forbidden("token expired!") from None
            except jwt.PyJWTError:
                raise Forbidden("token invalid!") from None
            username, gen = claims["sub"], claims.get("gen")
            # A token from before generations (no ``gen``) is as stale as a revoked one.
            if type(gen) is not int or not isinstance(username, str):
                raise Forbidden("token invalid!")
            generation = gen
            self._remember(self._tokens, token, (username, float(claims["exp"]), generation))
        identity = self._user(username)
        if identity is None:
            raise Forbidden("user not found!")
        if identity.generation != generation:
            raise Forbidden("token invalid!")
        return identity

    def _user(self, username: str) -> Identity | None:
        now = self._clock()
        cached = self._known_users.get(username)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = self._users.lookup(username)
        self._remember(self._known_users, username, (identity, now + USER_CACHE_S))
        return identity

    def _check_credentials(self, username: str, password: str, source: str) -> Identity:
        # Throttle before the cache: a locked address must not learn from cache hits either.
        self.throttle.check(username, source)
        digest = hmac.new(
            self._key, username.encode() + b"\0" + password.encode(), hashlib.sha256
        ).digest()
        now = self._clock()
        cached = self._credentials.get(digest)
        if cached is not None and cached[1] > now:
            current = self._user(username)
            if current is not None and current.generation == cached[0].generation:
                return cached[0]
        identity = self.pool.run(self._users.check_password, username, password)
        if identity is None:
            with self._lock:
                self.failed_logins += 1
            failures, lockout = self.throttle.failed(username, source)
            self.failure_log.failed(username, source, failures, lockout)
            raise Forbidden("unknown user!")
        self.throttle.succeeded(username, source)
        self._remember(self._credentials, digest, (identity, now + CREDENTIAL_CACHE_S))
        return identity

    def _remember(self, cache: dict[_K, _V], key: _K, value: _V) -> None:
        with self._lock:
            if len(cache) >= MAX_CACHE_ENTRIES:
                cache.clear()  # crude but bounded; a miss only costs one verification
            cache[key] = value

    def forget_all(self) -> None:
        """The accounts changed somewhere in the cluster: identities read before are stale."""
        with self._lock:
            self._known_users.clear()
            self._credentials.clear()

    def forget_user(self, username: str) -> None:
        with self._lock:
            self._known_users.pop(username, None)
            for digest in [
                d for d, (ident, _) in self._credentials.items() if ident.username == username
            ]:
                self._credentials.pop(digest, None)

    def stats(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "hashWorkers": pool.workers,
            "hashQueue": pool.queue,
            "hashInFlight": pool.in_flight,
            "hashed": pool.completed,
            "hashErrors": pool.errors,
            "hashRejected": pool.rejected,
            "failedLogins": self.failed_logins,
            "throttled": self.throttle.throttled,
            "lockouts": self.throttle.lockouts,
            "throttleEntries": len(self.throttle),
            "failedLoginLinesSuppressed": self.failure_log.suppressed,
        }

    def close(self) -> None:
        self.pool.close()


# ---------------------------------------------------------------------------------------------
# The authenticator this process serves with, and the authorization seam every edge calls
# ---------------------------------------------------------------------------------------------


class Action(StrEnum):
    """What a caller wants to do (Nacos's ``r`` and ``w``, plus node administration)."""

    READ = "r"
    WRITE = "w"
    ADMIN = "admin"  # change how the node behaves for everyone (switches, push statistics)


@dataclass(frozen=True, slots=True)
class Resource:
    """What a request touches, as Nacos names it (console.md §2.2):
    ``<namespace>:<group>:naming/<service>`` with ``*`` for "every", or ``console/<page>``.

    A naming resource also keeps its three components (``parts``): groups and service names may
    contain ``:``, so the text alone cannot say where the group ends, and a stored pattern is
    matched component by component (:func:`permits`)."""

    text: str
    parts: tuple[str, str, str] | None = field(default=None, compare=False)

    @classmethod
    def naming(cls, namespace: str, group: str = "*", service: str = "*") -> Resource:
        # Public is the blank namespace in a resource (Nacos ≥ 1.4.1). Only the exact id: the
        # core keeps ``PUBLIC`` as a namespace of its own, so the resource must not merge them.
        ns = "" if namespace == "public" else namespace
        group = group or "*"
        tail = f"naming/{service or '*'}"
        return cls(f"{ns}:{group}:{tail}", (ns, group, tail))

    @classmethod
    def console(cls, page: str) -> Resource:
        return cls(f"console/{page}")

    @property
    def admin_only(self) -> bool:
        return self.text.startswith("console/")


_installed: Authenticator | None = None
_accounts: AccountsService | None = None


def install(auth: Authenticator | None, accounts: AccountsService | None = None) -> None:
    """Set by the composition root (``node``) once at start; ``auth`` is None while auth is
    off. Decisions are cached per (user, action, resource) until the accounts change."""
    global _installed, _accounts
    _installed = auth
    _accounts = accounts
    _decisions.clear()
    if accounts is not None:
        accounts.listeners.append(_decisions.clear)
        if auth is not None:
            accounts.listeners.append(auth.forget_all)


def installed() -> Authenticator | None:
    return _installed


@functools.lru_cache(maxsize=1024)  # decisions are cached too; this only speeds the misses
def _pattern(resource: str) -> re.Pattern[str]:
    """A stored resource as a whole-string match where ``*`` means anything. Nacos turns the
    stored text into a regex with only ``*`` replaced, so ``.`` and friends were live regex
    syntax in a permission; here everything but ``*`` is literal."""
    return re.compile(".*".join(re.escape(part) for part in resource.split("*")))


def _full(pattern: str, text: str) -> bool:
    return _pattern(pattern).fullmatch(text) is not None


def matches(stored: str, resource: Resource) -> bool:
    """Whether a stored resource pattern covers ``resource``.

    Nacos matches the whole string, so a ``*`` in the group slot also ate ``:``: a rule on group
    ``A`` (``dev:A:*``) covered group ``A:B`` too. Here the stored pattern must split into
    namespace, group and rest with each part matching its component (namespace ids hold no
    ``:``; a group may, hence trying each split). A pattern without ``:`` (``*``) is matched
    against the whole text, as in Nacos."""
    parts = resource.parts
    if parts is None or ":" not in stored:
        return _full(stored, resource.text)
    namespace, _, rest = stored.partition(":")
    if not _full(namespace, parts[0]):
        return False
    split = rest.find(":")
    while split >= 0:
        if _full(rest[:split], parts[1]) and _full(rest[split + 1 :], parts[2]):
            return True
        split = rest.find(":", split + 1)
    return False


def permits(permissions: Iterable[Permission], action: Action, resource: Resource) -> bool:
    """Any permission whose action holds the letter asked for (``rw`` grants both; Nacos's
    "contains" test) and whose pattern covers the resource."""
    letter = action.value
    return any(letter in p.action and matches(p.resource, resource) for p in permissions)


class _Decisions:
    """Per (user, action, resource) allow/deny, dropped whole on any accounts change (rare):
    the hot path then costs one dict lookup per request."""

    MAX = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, Action, str], bool] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def decide(self, username: str, action: Action, resource: Resource) -> bool:
        key = (username, action, resource.text)  # the member itself: ``.value`` costs more
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        allowed = _decide(_directory(), username, action, resource)
        with self._lock:
            if len(self._cache) >= self.MAX:
                self._cache.clear()
            self._cache[key] = allowed
        return allowed


_decisions = _Decisions()


def _directory() -> Directory:
    if _accounts is None:
        return Directory(None)
    return _accounts.directory()


def _decide(directory: Directory, username: str, action: Action, resource: Resource) -> bool:
    user = directory.user(username)
    if user is None:
        return False
    if user.is_admin:
        return True
    if action is Action.ADMIN or resource.admin_only:
        return False
    return permits(directory.permissions_of(user.roles), action, resource)


def can(identity: Identity | None, action: Action, resource: Resource) -> bool:
    if identity is None:
        return True
    if identity.global_admin:
        return True
    return _decisions.decide(identity.username, action, resource)


def authorize(identity: Identity | None, action: Action, resource: Resource) -> None:
    """The one authorization decision every edge calls, after authentication.

    ``identity`` is None when auth is off (everything is allowed, as in Nacos). Raises
    :class:`Forbidden` (``authorization failed!``, Nacos's message) when denied."""
    if not can(identity, action, resource):
        raise Forbidden("authorization failed!")


def readable_namespaces(identity: Identity | None, namespace_ids: Iterable[str]) -> list[str]:
    """The namespaces a user may see: those where it can read every service, or some group
    (a group-scoped rule shows the namespace; Nacos showed every namespace to everyone)."""
    ids = list(namespace_ids)
    if identity is None or identity.global_admin:
        return ids
    directory = _directory()
    user = directory.user(identity.username)
    if user is None:
        return []
    permissions = directory.permissions_of(user.roles)
    visible = []
    for namespace_id in ids:
        ns = "" if namespace_id == "public" else namespace_id
        if any(
            "r" in p.action and _pattern(p.resource.split(":", 1)[0]).fullmatch(ns)
            for p in permissions
        ):
            visible.append(namespace_id)
    return visible


def decision_stats() -> dict[str, int]:
    return {"hits": _decisions.hits, "misses": _decisions.misses}
