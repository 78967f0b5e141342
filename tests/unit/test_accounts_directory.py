"""The replicated accounts document (``accounts.directory``): every change's invariants as pure
functions on documents, their determinism (what Raft needs: the same change on the same
document gives the same result on every member), and that no rendering carries a hash."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from accounts.directory import (
    ADMIN_ROLE,
    EMPTY,
    AccountsService,
    AddPermission,
    BindRole,
    CreateUser,
    DeleteUser,
    Directory,
    Permission,
    RemovePermission,
    RevokeTokens,
    SetPassword,
    UnbindRole,
    normalize_resource,
)
from consistency.datum import DatumKey
from lib.errors import Conflict, InvalidParam, NamingError
from naming.changes import Change

HASH = "pbkdf2_sha256$1$salt$hash-of-"


def doc_with(*changes: Change, start: Any = None) -> Any:
    document = start
    for change in changes:
        document = change.apply(document)
    return document


def base() -> Any:
    """An admin, two users; alice holds ROLE_DEV (with two permissions) and ROLE_SHARED, which
    bob holds too (with one permission)."""
    return doc_with(
        CreateUser("nacos", HASH + "nacos", admin=True),
        CreateUser("alice", HASH + "alice"),
        CreateUser("bob", HASH + "bob"),
        BindRole("ROLE_DEV", "alice"),
        BindRole("ROLE_SHARED", "alice"),
        BindRole("ROLE_SHARED", "bob"),
        AddPermission("ROLE_DEV", "dev:*:*", "rw"),
        AddPermission("ROLE_DEV", ":*:*", "r"),
        AddPermission("ROLE_SHARED", "test:*:*", "r"),
    )


# Every change kind, each valid on base().
CHANGES: list[Change] = [
    CreateUser("carol", HASH + "carol"),
    SetPassword("alice", HASH + "new"),
    RevokeTokens("bob"),
    DeleteUser("alice"),
    BindRole("ROLE_OPS", "bob"),
    UnbindRole("ROLE_SHARED", "bob"),
    UnbindRole("ROLE_SHARED", ""),
    AddPermission("ROLE_SHARED", "prod:GROUP_A:*", "w"),
    RemovePermission("ROLE_DEV", "dev:*:*", "rw"),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: type(c).__name__)
def test_changes_are_deterministic_and_leave_their_input_alone(change: Change):
    document = base()
    before = copy.deepcopy(document)
    first, second = change.apply(document), change.apply(document)
    assert first == second
    assert document == before
    # What travels through Raft: the encoded change, decoded on another member.
    wire = json.loads(json.dumps(change.encode()))
    decoded = Change.decode(wire)
    assert decoded == change
    assert decoded.apply(copy.deepcopy(before)) == first
    # The result is a plain JSON document (it is stored and replicated as one).
    assert json.loads(json.dumps(first)) == first


REFUSED: list[tuple[Change, type[NamingError], str]] = [
    (CreateUser("alice", HASH), Conflict, "user 'alice' already exist!"),
    (CreateUser("root", HASH, admin=True), Conflict, "have admin user cannot use it"),
    (CreateUser("nacos", HASH, admin=True), Conflict, "have admin user cannot use it"),
    (SetPassword("ghost", HASH), InvalidParam, "user ghost not exist!"),
    (RevokeTokens("ghost"), InvalidParam, "user ghost not exist!"),
    (DeleteUser("ghost"), InvalidParam, "user ghost not exist!"),
    (DeleteUser("nacos"), InvalidParam, "cannot delete admin: nacos"),
    (BindRole(ADMIN_ROLE, "bob"), InvalidParam, "role 'ROLE_ADMIN' is not permitted to create!"),
    (BindRole("ROLE_DEV", "ghost"), InvalidParam, "user 'ghost' not found!"),
    (
        BindRole("ROLE_DEV", "alice"),
        Conflict,
        "user 'alice' already bound to the role 'ROLE_DEV'!",
    ),
    (UnbindRole("ROLE_NOBODY", ""), InvalidParam, "role ROLE_NOBODY not found!"),
    (UnbindRole("ROLE_DEV", "bob"), InvalidParam, "role ROLE_DEV of user bob not found!"),
    (
        UnbindRole(ADMIN_ROLE, "nacos"),
        InvalidParam,
        "the last ROLE_ADMIN binding cannot be removed",
    ),
    (UnbindRole(ADMIN_ROLE, ""), InvalidParam, "the last ROLE_ADMIN binding cannot be removed"),
    (AddPermission("ROLE_NOBODY", ":*:*", "r"), InvalidParam, "role ROLE_NOBODY not found!"),
    (AddPermission(ADMIN_ROLE, ":*:*", "r"), InvalidParam, "ROLE_ADMIN already has every"),
    (AddPermission("ROLE_DEV", "dev:*:*", "rw"), Conflict, "already granted to ROLE_DEV"),
    (RemovePermission("ROLE_DEV", "dev:*:*", "r"), InvalidParam, "of role ROLE_DEV not found!"),
]


@pytest.mark.parametrize("change,error,message", REFUSED, ids=lambda v: str(v)[:40])
def test_refused_changes_raise_the_nacos_message_and_change_nothing(
    change: Change, error: type[NamingError], message: str
):
    document = base()
    before = copy.deepcopy(document)
    with pytest.raises(error) as raised:
        change.apply(document)
    assert message in raised.value.message
    assert document == before


def test_create_user_starts_without_roles_and_with_a_new_generation():
    document = base()
    directory = Directory(doc_with(CreateUser("carol", HASH), start=document))
    carol = directory.user("carol")
    assert carol is not None and carol.roles == frozenset() and carol.generation == 1
    assert not directory.is_admin("carol")


def test_password_change_and_logout_bump_the_generation():
    document = base()
    alice = Directory(document).generation("alice")
    changed = Directory(doc_with(SetPassword("alice", HASH + "new"), start=document))
    user = changed.user("alice")
    assert user is not None and user.password_hash == HASH + "new"
    assert changed.generation("alice") == alice + 1
    assert (
        Directory(doc_with(RevokeTokens("alice"), start=document)).generation("alice") == alice + 1
    )


def test_deleting_a_user_removes_its_bindings_and_its_roles_orphaned_permissions():
    after = Directory(doc_with(DeleteUser("alice"), start=base()))
    assert after.user("alice") is None
    assert [b for b in after.bindings() if b[1] == "alice"] == []
    # ROLE_DEV had only alice: its permissions went with her; ROLE_SHARED keeps bob and its rule.
    assert "ROLE_DEV" not in after.role_names()
    assert [p for p in after.permissions() if p.role == "ROLE_DEV"] == []
    assert after.permissions_of(["ROLE_SHARED"]) == [Permission("ROLE_SHARED", "test:*:*", "r")]


def test_a_recreated_user_has_no_roles_and_no_old_tokens():
    document = base()
    old = Directory(document).generation("alice")
    recreated = Directory(
        doc_with(DeleteUser("alice"), CreateUser("alice", HASH + "again"), start=document)
    )
    alice = recreated.user("alice")
    assert alice is not None and alice.roles == frozenset()
    assert recreated.permissions_of(alice.roles) == []
    # The generation outlives the user, so a token of the first alice stays dead.
    assert alice.generation > old + 1


def test_unbinding_the_last_holder_of_a_role_removes_its_permissions():
    one = Directory(doc_with(UnbindRole("ROLE_SHARED", "bob"), start=base()))
    assert one.holders("ROLE_SHARED") == ["alice"]
    assert one.permissions_of(["ROLE_SHARED"]) != []
    every = Directory(doc_with(UnbindRole("ROLE_SHARED", ""), start=base()))
    assert "ROLE_SHARED" not in every.role_names()
    assert every.permissions_of(["ROLE_SHARED"]) == []
    with pytest.raises(InvalidParam, match="role ROLE_SHARED not found!"):
        AddPermission("ROLE_SHARED", ":*:*", "r").apply(every.document)


def test_an_admin_binding_goes_only_while_another_admin_remains():
    # A second admin can only come from the document (the API never grants ROLE_ADMIN).
    document = copy.deepcopy(base())
    document["bindings"] = sorted([*document["bindings"], [ADMIN_ROLE, "bob"]])
    after = Directory(doc_with(UnbindRole(ADMIN_ROLE, "bob"), start=document))
    assert not after.is_admin("bob") and after.is_admin("nacos")
    assert after.has_admin()
    assert Directory(doc_with(DeleteUser("alice"), start=document)).is_admin("bob")


def test_bindings_and_permissions_stay_sorted_whatever_the_order_of_changes():
    a = doc_with(BindRole("ROLE_Z", "bob"), BindRole("ROLE_A", "bob"), start=base())
    b = doc_with(BindRole("ROLE_A", "bob"), BindRole("ROLE_Z", "bob"), start=base())
    assert a == b
    assert a["bindings"] == sorted(a["bindings"])
    c = doc_with(
        AddPermission("ROLE_SHARED", "z:*:*", "r"),
        AddPermission("ROLE_SHARED", "a:*:*", "r"),
        start=base(),
    )
    assert c["permissions"] == sorted(c["permissions"])


def test_the_first_change_on_an_empty_document():
    document = CreateUser("nacos", HASH, admin=True).apply(None)
    directory = Directory(document)
    assert directory.is_admin("nacos") and directory.has_admin()
    assert Directory(None).usernames() == [] and not Directory(EMPTY).has_admin()


def test_no_rendering_of_the_directory_carries_a_hash():
    directory = Directory(base())
    renderings: list[Any] = [
        repr(directory),
        directory.usernames(),
        directory.bindings(),
        directory.role_names(),
        directory.permissions(),
        [repr(directory.user(name)) for name in directory.usernames()],
        [directory.holders(role) for role in directory.role_names()],
    ]
    assert HASH not in repr(renderings) and "pbkdf2" not in repr(renderings)


# -- the service: validation and hashing before the change is submitted ---------------------------


class FakeStore:
    """Applies changes at once, as a single member's Raft would; records what was submitted."""

    def __init__(self, document: Any = None) -> None:
        self.document = document
        self.submitted: list[Change] = []

    def submit(self, key: DatumKey, change: Any, timeout: float = 5.0) -> Any:
        assert key == DatumKey.accounts()
        self.document = change.apply(self.document)
        self.submitted.append(change)

    def value(self, key: DatumKey) -> object | None:
        return self.document


def service(document: Any = None) -> tuple[AccountsService, FakeStore]:
    store = FakeStore(document)
    return AccountsService(store, hasher=lambda password: "hashed:" + password[::-1]), store


def test_the_password_is_hashed_before_the_change_is_submitted():
    accounts, store = service(base())
    accounts.create_user("carol", "clear-password")
    accounts.set_password("bob", "other-password")
    wire = json.dumps([c.encode() for c in store.submitted])
    assert "clear-password" not in wire and "other-password" not in wire
    carol = accounts.directory().user("carol")
    assert carol is not None and carol.password_hash == "hashed:" + "clear-password"[::-1]


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.create_user("bad name", "password-1"),
        lambda a: a.create_user("u" * 65, "password-1"),
        lambda a: a.create_user("carol", "short"),
        lambda a: a.create_user("carol", "p" * 129),
        lambda a: a.create_user("alice", "password-1"),
        lambda a: a.set_password("ghost", "password-1"),
        lambda a: a.set_password("alice", ""),
        lambda a: a.bind_role("ROLE X", "bob"),
        lambda a: a.bind_role("R" * 65, "bob"),
        lambda a: a.add_permission("ROLE_DEV", "dev", "r"),
        lambda a: a.add_permission("ROLE_DEV", "dev:*", "r"),
        lambda a: a.add_permission("ROLE_DEV", "d v:*:*", "r"),
        lambda a: a.add_permission("ROLE_DEV", "dev:*:*" + "x" * 300, "r"),
        lambda a: a.add_permission("ROLE_DEV", "dev:*:*", "rwx"),
        lambda a: a.add_permission("ROLE_DEV", "dev:*:*", ""),
        lambda a: a.remove_permission("ROLE_DEV", "dev:*:*", "x"),
        lambda a: a.create_admin("short"),
    ],
)
def test_bad_input_is_refused_before_anything_is_submitted(call: Any):
    accounts, store = service(base())
    with pytest.raises(NamingError):
        call(accounts)
    assert store.submitted == []


def test_create_admin_only_while_nobody_is_admin():
    accounts, store = service()
    accounts.create_admin("first-password")
    assert accounts.directory().is_admin("nacos")
    with pytest.raises(Conflict, match="have admin user cannot use it"):
        accounts.create_admin("second-password")
    assert len(store.submitted) == 1


def test_two_members_racing_for_the_first_admin_create_one():
    """Both checked the directory before either change landed: apply refuses the second."""
    store = FakeStore()
    first = AccountsService(store, hasher=lambda p: "h1")
    second = AccountsService(store, hasher=lambda p: "h2")
    change_a = CreateUser("nacos", "h1", admin=True)
    change_b = CreateUser("nacos", "h2", admin=True)
    store.submit(DatumKey.accounts(), change_a)
    with pytest.raises(Conflict):
        store.submit(DatumKey.accounts(), change_b)
    assert first.directory().user("nacos") == second.directory().user("nacos")
    assert second.ensure_admin("another", lambda: "generated") is None


def test_ensure_admin_generates_a_password_only_when_none_is_given():
    accounts, _ = service()
    assert accounts.ensure_admin("", lambda: "generated-password") == "generated-password"
    other, _ = service()
    assert other.ensure_admin("given-password", lambda: "unused") is None
    assert other.directory().is_admin("nacos")


@pytest.mark.parametrize(
    "raw,stored",
    [
        ("dev:*:*", "dev:*:*"),
        ("public:*:*", ":*:*"),
        ("PUBLIC:*:*", ":*:*"),
        (":*:*", ":*:*"),
        (" dev:GROUP_A:* ", "dev:GROUP_A:*"),
        ("dev:*:naming/svc", "dev:*:naming/svc"),
    ],
)
def test_resources_are_stored_in_one_form(raw: str, stored: str):
    assert normalize_resource(raw) == stored


@pytest.mark.parametrize("raw", ["", "dev", "dev:*", "dev::*", "dev:*:", "d v:*:*", "a:b:<c>"])
def test_malformed_resources_are_refused(raw: str):
    with pytest.raises(InvalidParam):
        normalize_resource(raw)
