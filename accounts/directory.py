"""Cluster-wide accounts: users, role bindings, permissions and token generations.

Nacos keeps these in its database, replicated through JRaft in embedded mode, so every member
agrees (console.md §2.1). Ours are one JSON document under ``DatumKey.accounts()``, replicated
through Raft like every persistent value and changed only by the deterministic :class:`Change`s
below: a password is hashed before its change is submitted, so ``apply`` never draws a salt and
every member stores the same bytes.

The document::

    {"users": {name: {"password": <django hash>}},
     "generations": {name: int},          # outlives the user: a re-created name gets no old tokens
     "bindings": [[role, username], ...],  # sorted
     "permissions": [[role, resource, action], ...]}  # sorted

Invariants every change keeps (checked inside ``apply``, so concurrent writers on different
members cannot break them between a check and a write):

* a binding names an existing user; a permission names a role that has a binding;
* deleting a user removes its bindings, and a role left without bindings loses its permissions
  (Nacos leaves both behind, and a user re-created under the same name inherited them);
* ``ROLE_ADMIN`` is only given at bootstrap, and its last holder can be neither deleted nor
  unbound.

Reads go through :class:`Directory`, a typed index of one document version, built once per
version.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

from django.contrib.auth.hashers import check_password, make_password

from consistency.datum import DatumKey
from lib.errors import Conflict, InvalidParam
from naming.changes import Change
from naming.codec import Value

ADMIN_ROLE = "ROLE_ADMIN"
ADMIN_USERNAME = "nacos"
USERNAME_RE = re.compile(r"\A[A-Za-z0-9_.@-]{1,64}\Z")
ROLE_RE = re.compile(r"\A[A-Za-z0-9_.@-]{1,64}\Z")
MIN_PASSWORD = 8
MAX_PASSWORD = 128
MAX_RESOURCE = 255
ACTIONS = ("r", "w", "rw")
# <namespace>:<group>:<type>/<name> (console.md §2.2); the namespace part may be blank (public).
_RESOURCE_PART = re.compile(r"\A[A-Za-z0-9_.*-]*\Z")
_RESOURCE_TAIL = re.compile(r"\A[A-Za-z0-9_.*@/:-]+\Z")

Document = Mapping[str, Any]
EMPTY: Document = {"users": {}, "generations": {}, "bindings": [], "permissions": []}


class Permission(NamedTuple):
    role: str
    resource: str
    action: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    # Never rendered: the directory's readers show names and roles only, and repr leaves it out
    # (a logged record or a test failure must not print it).
    password_hash: str = field(repr=False)
    generation: int
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


# -- validation (shared by every edge) ------------------------------------------------------------


def check_username(name: str) -> str:
    if not USERNAME_RE.match(name):
        raise InvalidParam("username must be 1-64 characters of letters, digits and _ . @ -")
    return name


def check_password_text(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidParam(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidParam(f"password must have at most {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if not ROLE_RE.match(role):
        raise InvalidParam("role must be 1-64 characters of letters, digits and _ . @ -")
    return role


def normalize_resource(resource: str) -> str:
    """``<namespace>:<group>:<rest>``, e.g. ``dev:*:*`` or ``dev:GROUP_A:*``; ``public`` is
    written as the blank namespace (what a request's resource says, console.md §2.2), so
    ``public:*:*`` and ``:*:*`` are the same rule (the largest Nacos bug cluster, §2.3)."""
    resource = resource.strip()
    if not resource or len(resource) > MAX_RESOURCE:
        raise InvalidParam(f"resource must be 1-{MAX_RESOURCE} characters")
    parts = resource.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InvalidParam(
            f"malformed resource '{resource}': expected <namespaceId>:<group>:<name>, "
            "e.g. dev:*:* or dev:GROUP_A:*"
        )
    namespace, group, tail = parts
    if namespace.lower() == "public":
        namespace = ""
    if not _RESOURCE_PART.match(namespace) or not _RESOURCE_PART.match(group):
        raise InvalidParam(f"malformed resource '{resource}': bad namespace or group")
    if not _RESOURCE_TAIL.match(tail):
        raise InvalidParam(f"malformed resource '{resource}': bad name part")
    return f"{namespace}:{group}:{tail}"


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise InvalidParam("action must be one of r, w, rw")
    return action


def hash_password(password: str) -> str:
    return make_password(password)


# -- the read view --------------------------------------------------------------------------------


class Directory:
    """An index over one version of the document; immutable once built."""

    def __init__(self, document: Document | None) -> None:
        doc = document or EMPTY
        self._doc = doc
        roles: dict[str, set[str]] = {}
        holders: dict[str, list[str]] = {}
        for role, username in doc.get("bindings", []):
            roles.setdefault(username, set()).add(role)
            holders.setdefault(role, []).append(username)
        generations = doc.get("generations", {})
        self._users = {
            name: UserRecord(
                name,
                str(row["password"]),
                int(generations.get(name, 0)),
                frozenset(roles.get(name, ())),
            )
            for name, row in doc.get("users", {}).items()
        }
        self._holders = holders
        self._permissions = [Permission(*p) for p in doc.get("permissions", [])]
        self._by_role: dict[str, list[Permission]] = {}
        for p in self._permissions:
            self._by_role.setdefault(p.role, []).append(p)

    @property
    def document(self) -> Document:
        return self._doc

    def user(self, username: str) -> UserRecord | None:
        return self._users.get(username)

    def usernames(self) -> list[str]:
        return sorted(self._users)

    def generation(self, username: str) -> int:
        return int(self._doc.get("generations", {}).get(username, 0))

    def bindings(self) -> list[tuple[str, str]]:
        """(role, username), sorted by role then user."""
        return [(r, u) for r, u in self._doc.get("bindings", [])]

    def role_names(self) -> list[str]:
        return sorted(self._holders)

    def holders(self, role: str) -> list[str]:
        return sorted(self._holders.get(role, ()))

    def permissions(self) -> list[Permission]:
        return list(self._permissions)

    def permissions_of(self, roles: Iterable[str]) -> list[Permission]:
        return [p for r in roles for p in self._by_role.get(r, ())]

    def is_admin(self, username: str) -> bool:
        user = self._users.get(username)
        return user is not None and user.is_admin

    def has_admin(self) -> bool:
        return bool(self._holders.get(ADMIN_ROLE))

    def verify(self, username: str, password: str) -> UserRecord | None:
        """The slow part (PBKDF2): callers run it on the hashing pool."""
        user = self._users.get(username)
        if user is None:
            # Hash anyway, so a wrong user name costs what a wrong password costs.
            check_password(password, _DUMMY_HASH)
            return None
        return user if check_password(password, user.password_hash) else None


_DUMMY_HASH = "pbkdf2_sha256$1000000$timingpad$3cJ6S4vYbT7hXt1F1Wv5o9vQK7gJt3bQ2Yx2Q0R1nN8="


# -- the changes (deterministic: no clock, no randomness, no I/O) ----------------------------------


def _doc(current: object) -> dict[str, Any]:
    """A copy one level deep: changes replace the parts they touch, never mutate the stored one."""
    doc = dict(current) if isinstance(current, Mapping) else {}
    return {
        "users": dict(doc.get("users", {})),
        "generations": dict(doc.get("generations", {})),
        "bindings": [list(b) for b in doc.get("bindings", [])],
        "permissions": [list(p) for p in doc.get("permissions", [])],
    }


def _bump(doc: dict[str, Any], username: str) -> None:
    doc["generations"][username] = int(doc["generations"].get(username, 0)) + 1


def _drop_orphan_permissions(doc: dict[str, Any]) -> None:
    bound = {role for role, _ in doc["bindings"]}
    doc["permissions"] = [p for p in doc["permissions"] if p[0] in bound]


def _require_user(doc: dict[str, Any], username: str, message: str) -> None:
    if username not in doc["users"]:
        raise InvalidParam(message)


def _admin_holders(doc: dict[str, Any]) -> list[str]:
    return [u for r, u in doc["bindings"] if r == ADMIN_ROLE]


class AccountsChange(Change):
    """Field encoding shared by the account changes: their fields are all plain strings."""

    _names: ClassVar[tuple[str, ...]] = ()

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._names}

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Change:
        return cls(*(data[name] for name in cls._names))


@dataclass(frozen=True, slots=True)
class CreateUser(AccountsChange):
    type_name: ClassVar[str] = "create_user"
    _names: ClassVar[tuple[str, ...]] = ("username", "password_hash", "admin")
    username: str
    password_hash: str
    admin: bool = False  # only the bootstrap admin: the API cannot grant ROLE_ADMIN

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        # The admin check first: members racing for the first admin all name ``nacos``, and
        # the losers must hear Nacos's answer, not that the name is taken.
        if self.admin and _admin_holders(doc):
            raise Conflict("have admin user cannot use it")
        if self.username in doc["users"]:
            raise Conflict(f"user '{self.username}' already exist!")
        doc["users"][self.username] = {"password": self.password_hash}
        # A re-created name must not revive the old user's tokens: its generation moves on.
        _bump(doc, self.username)
        if self.admin:
            doc["bindings"] = sorted([*doc["bindings"], [ADMIN_ROLE, self.username]])
        return doc


@dataclass(frozen=True, slots=True)
class SetPassword(AccountsChange):
    type_name: ClassVar[str] = "set_password"
    _names: ClassVar[tuple[str, ...]] = ("username", "password_hash")
    username: str
    password_hash: str

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        _require_user(doc, self.username, f"user {self.username} not exist!")
        doc["users"][self.username] = {"password": self.password_hash}
        _bump(doc, self.username)
        return doc


@dataclass(frozen=True, slots=True)
class RevokeTokens(AccountsChange):
    """Logout: every token and console session of the user issued before stops working."""

    type_name: ClassVar[str] = "revoke_tokens"
    _names: ClassVar[tuple[str, ...]] = ("username",)
    username: str

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        _require_user(doc, self.username, f"user {self.username} not exist!")
        _bump(doc, self.username)
        return doc


@dataclass(frozen=True, slots=True)
class DeleteUser(AccountsChange):
    type_name: ClassVar[str] = "delete_user"
    _names: ClassVar[tuple[str, ...]] = ("username",)
    username: str

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        _require_user(doc, self.username, f"user {self.username} not exist!")
        if self.username in _admin_holders(doc):
            raise InvalidParam(f"cannot delete admin: {self.username}")
        del doc["users"][self.username]
        _bump(doc, self.username)
        doc["bindings"] = [b for b in doc["bindings"] if b[1] != self.username]
        _drop_orphan_permissions(doc)
        return doc


@dataclass(frozen=True, slots=True)
class BindRole(AccountsChange):
    type_name: ClassVar[str] = "bind_role"
    _names: ClassVar[tuple[str, ...]] = ("role", "username")
    role: str
    username: str

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        if self.role == ADMIN_ROLE:
            raise InvalidParam(f"role '{ADMIN_ROLE}' is not permitted to create!")
        _require_user(doc, self.username, f"user '{self.username}' not found!")
        if [self.role, self.username] in doc["bindings"]:
            raise Conflict(f"user '{self.username}' already bound to the role '{self.role}'!")
        doc["bindings"] = sorted([*doc["bindings"], [self.role, self.username]])
        return doc


@dataclass(frozen=True, slots=True)
class UnbindRole(AccountsChange):
    """Without a user name, every binding of the role goes (Nacos); the role's permissions go
    with its last binding."""

    type_name: ClassVar[str] = "unbind_role"
    _names: ClassVar[tuple[str, ...]] = ("role", "username")
    role: str
    username: str  # "" = every holder

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        remaining = [
            b
            for b in doc["bindings"]
            if not (b[0] == self.role and (not self.username or b[1] == self.username))
        ]
        if len(remaining) == len(doc["bindings"]):
            who = f" of user {self.username}" if self.username else ""
            raise InvalidParam(f"role {self.role}{who} not found!")
        if self.role == ADMIN_ROLE and not any(r == ADMIN_ROLE for r, _ in remaining):
            raise InvalidParam(f"the last {ADMIN_ROLE} binding cannot be removed")
        doc["bindings"] = remaining
        _drop_orphan_permissions(doc)
        return doc


@dataclass(frozen=True, slots=True)
class AddPermission(AccountsChange):
    type_name: ClassVar[str] = "add_permission"
    _names: ClassVar[tuple[str, ...]] = ("role", "resource", "action")
    role: str
    resource: str
    action: str

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        if not any(r == self.role for r, _ in doc["bindings"]):
            raise InvalidParam(f"role {self.role} not found!")
        if self.role == ADMIN_ROLE:
            raise InvalidParam(f"{ADMIN_ROLE} already has every permission")
        entry = [self.role, self.resource, self.action]
        if entry in doc["permissions"]:
            raise Conflict(
                f"permission {self.action} on {self.resource} already granted to {self.role}"
            )
        doc["permissions"] = sorted([*doc["permissions"], entry])
        return doc


@dataclass(frozen=True, slots=True)
class RemovePermission(AddPermission):
    type_name: ClassVar[str] = "remove_permission"

    def apply(self, current: Value | None) -> Value | None:
        doc = _doc(current)
        entry = [self.role, self.resource, self.action]
        if entry not in doc["permissions"]:
            raise InvalidParam(
                f"permission {self.action} on {self.resource} of role {self.role} not found!"
            )
        doc["permissions"] = [p for p in doc["permissions"] if p != entry]
        return doc


# -- the service: validation, hashing, submission ----------------------------------------------


class Store(Protocol):
    """What the service needs of the consistency layer (``DelegateConsistencyService`` is one)."""

    def submit(self, key: DatumKey, change: Any, timeout: float = 5.0) -> Any: ...

    def value(self, key: DatumKey) -> object | None: ...


KEY = DatumKey.accounts()


class AccountsService:
    """Account writes and reads for every edge (the v1 auth API, the console, bootstrap).

    Thread-safe: writes are serialized by the store (Raft), reads index the current document
    once per version. ``listeners`` are called (on the notifier thread) after each version
    lands, so caches of decisions and identities can be dropped on every member.
    """

    def __init__(self, store: Store, hasher: Callable[[str], str] = hash_password) -> None:
        self._store = store
        self._hash = hasher
        self._lock = threading.Lock()
        self._cached: tuple[object, Directory] | None = None
        self.listeners: list[Callable[[], None]] = []

    def directory(self) -> Directory:
        document = self._store.value(KEY)
        cached = self._cached
        if cached is not None and cached[0] is document:
            return cached[1]
        directory = Directory(document if isinstance(document, Mapping) else None)
        with self._lock:
            self._cached = (document, directory)
        return directory

    def changed(self) -> None:
        """The accounts datum changed on this member (called by the composition root)."""
        for listener in list(self.listeners):
            listener()

    def _submit(self, change: Change) -> None:
        self._store.submit(KEY, change)

    def create_user(self, username: str, password: str) -> None:
        check_username(username)
        check_password_text(password)
        if self.directory().user(username) is not None:
            raise Conflict(f"user '{username}' already exist!")
        self._submit(CreateUser(username, self._hash(password)))

    def set_password(self, username: str, password: str) -> None:
        check_username(username)
        check_password_text(password)
        if self.directory().user(username) is None:
            raise InvalidParam(f"user {username} not exist!")
        self._submit(SetPassword(username, self._hash(password)))

    def delete_user(self, username: str) -> None:
        self._submit(DeleteUser(check_username(username)))

    def revoke_tokens(self, username: str) -> None:
        self._submit(RevokeTokens(check_username(username)))

    def bind_role(self, role: str, username: str) -> None:
        self._submit(BindRole(check_role(role), check_username(username)))

    def unbind_role(self, role: str, username: str | None) -> None:
        self._submit(UnbindRole(check_role(role), check_username(username) if username else ""))

    def add_permission(self, role: str, resource: str, action: str) -> None:
        self._submit(
            AddPermission(check_role(role), normalize_resource(resource), check_action(action))
        )

    def remove_permission(self, role: str, resource: str, action: str) -> None:
        self._submit(
            RemovePermission(check_role(role), normalize_resource(resource), check_action(action))
        )

    def create_admin(self, password: str) -> None:
        """The first admin through the API (Nacos 2.x ``POST /v1/auth/users/admin``). Refused
        with :class:`Conflict` once anyone holds ``ROLE_ADMIN``: checked here for a quick answer
        and again inside ``apply``, so of two callers racing for an empty cluster one wins."""
        check_password_text(password)
        if self.directory().has_admin():
            raise Conflict("have admin user cannot use it")
        self._submit(CreateUser(ADMIN_USERNAME, self._hash(password), admin=True))

    def ensure_admin(self, password: str | None, generate: Callable[[], str]) -> str | None:
        """Create the ``nacos`` admin if nobody holds ``ROLE_ADMIN``; return the password when
        it was generated here. Members starting together race: the first change wins, the
        others are refused inside ``apply`` and return None."""
        if self.directory().has_admin():
            return None
        generated = None
        if not password:
            generated = password = generate()
        try:
            self._submit(CreateUser(ADMIN_USERNAME, self._hash(password), admin=True))
        except Conflict:  # another member won the race (refused by the leader's apply)
            return None
        return generated


_service: AccountsService | None = None


def install(service: AccountsService | None) -> None:
    """Set by the composition root (``node``) once at start."""
    global _service
    _service = service


def service() -> AccountsService:
    if _service is None:
        raise RuntimeError("no accounts service installed (start the node with runnode)")
    return _service
