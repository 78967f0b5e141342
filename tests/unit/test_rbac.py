"""Roles and permissions: the pattern match, the decision order, the cache and its invalidation,
and the resource each v1 request is checked against (issue #10, console.md §2.2-2.3)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

import accounts.auth
from accounts.auth import (
    Action,
    Identity,
    Resource,
    authorize,
    can,
    decision_stats,
    permits,
    readable_namespaces,
)
from accounts.directory import AccountsService, Permission
from facades.nacos_v1.api import (
    beat_resource,
    namespace_resource,
    naming_resource,
    status_key_resource,
)
from facades.nacos_v1.params import Params
from lib.errors import Forbidden
from node.runtime import NodeRuntime, in_memory_runtime

R, W = Action.READ, Action.WRITE


def rule(resource: str, action: str = "rw") -> list[Permission]:
    return [Permission("ROLE_X", resource, action)]


# -- patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "resource", "allowed"),
    [
        ("dev:*:*", Resource.naming("dev", "G", "svc"), True),
        ("dev:*:*", Resource.naming("dev"), True),  # the namespace's list
        ("dev:*:*", Resource.naming("prod", "G", "svc"), False),
        ("dev:*:*", Resource.naming("dev2", "G", "svc"), False),  # whole-string, not a prefix
        (":*:*", Resource.naming("public", "G", "svc"), True),  # public is the blank namespace
        (":*:*", Resource.naming("", "G", "svc"), True),
        (":*:*", Resource.naming("dev", "G", "svc"), False),
        # PUBLIC is a namespace of its own in the core, so it is not the blank one here.
        (":*:*", Resource.naming("PUBLIC", "G", "svc"), False),
        ("dev:GRP:*", Resource.naming("dev", "GRP", "svc"), True),
        ("dev:GRP:*", Resource.naming("dev", "OTHER", "svc"), False),
        # A group-scoped rule cannot list the namespace: the list's group is a literal "*".
        ("dev:GRP:*", Resource.naming("dev"), False),
        ("dev:GRP:naming/svc", Resource.naming("dev", "GRP", "svc"), True),
        ("dev:GRP:naming/svc", Resource.naming("dev", "GRP", "svc2"), False),
        ("dev:*:naming/svc", Resource.naming("dev", "ANY", "svc"), True),
        # Literal "." in a stored pattern: not a regex wildcard.
        ("dev:a.b:*", Resource.naming("dev", "a.b", "svc"), True),
        ("dev:a.b:*", Resource.naming("dev", "axb", "svc"), False),
        ("dev:GRP:naming/s+", Resource.naming("dev", "GRP", "sss"), False),
        # "*" stays inside its component: a rule on group A does not cover group "A:B".
        ("dev:A:*", Resource.naming("dev", "A:B", "svc"), False),
        ("dev:A:B:*", Resource.naming("dev", "A:B", "svc"), True),
        ("dev:A*:*", Resource.naming("dev", "A:B", "svc"), True),  # "A*" does match "A:B"
        ("dev:*:naming/x", Resource.naming("dev", "G", "y:naming/x"), False),
        ("*", Resource.naming("dev", "G", "svc"), True),  # a bare "*" is everything, as Nacos
        ("dev*:*:*", Resource.naming("dev-2", "G", "svc"), True),
    ],
)
def test_permission_patterns(stored: str, resource: Resource, allowed: bool) -> None:
    assert permits(rule(stored), R, resource) is allowed


@pytest.mark.parametrize(
    ("granted", "read", "write"),
    [("r", True, False), ("w", False, True), ("rw", True, True), ("wr", True, True)],
)
def test_action_letters(granted: str, read: bool, write: bool) -> None:
    resource = Resource.naming("dev", "G", "svc")
    assert permits(rule("dev:*:*", granted), R, resource) is read
    assert permits(rule("dev:*:*", granted), W, resource) is write


def test_resource_text_is_nacos_string() -> None:
    assert Resource.naming("public", "DEFAULT_GROUP", "demo").text == ":DEFAULT_GROUP:naming/demo"
    assert Resource.naming("dev").text == "dev:*:naming/*"
    assert Resource.console("users").text == "console/users"
    assert Resource.console("users").admin_only


# -- the resource of each v1 request --------------------------------------------------------


def params(**values: str) -> Params:
    return Params(values)


def test_request_resources() -> None:
    assert naming_resource(params(serviceName="svc", namespaceId="dev")).text == (
        "dev:DEFAULT_GROUP:naming/svc"
    )
    assert naming_resource(params(serviceName="svc", groupName="G")).text == ":G:naming/svc"
    assert naming_resource(params(dom="svc")).text == ":DEFAULT_GROUP:naming/svc"
    assert naming_resource(params(namespaceId="public")).text == ":*:naming/*"
    # The core folds a grouped name by its prefix: so must the resource, or naming an allowed
    # group in groupName would write to another group.
    assert naming_resource(params(serviceName="OTHER@@svc", groupName="GRP")).text == (
        ":OTHER:naming/svc"
    )
    # A list is the namespace's list whatever stray serviceName comes along.
    assert namespace_resource(params(namespaceId="dev", serviceName="x")).text == ("dev:*:naming/*")


def test_beat_resource_reads_the_beat_json_when_service_name_is_absent() -> None:
    beat = '{"serviceName":"G@@svc","ip":"1.2.3.4","port":80}'
    assert beat_resource(params(beat=beat, namespaceId="dev")).text == "dev:G:naming/svc"
    # The parameter wins, as in the core.
    assert beat_resource(params(beat=beat, serviceName="other")).text == (
        ":DEFAULT_GROUP:naming/other"
    )
    # No name anywhere (or a broken body): every service, which only a namespace rule covers.
    assert beat_resource(params(beat="{nope")).text == ":*:naming/*"
    assert beat_resource(params(beat='{"ip":"1.2.3.4"}')).text == ":*:naming/*"


def test_statuses_key_resource() -> None:
    assert status_key_resource(params(key="dev##G@@svc")).text == "dev:G:naming/svc"
    assert status_key_resource(params(key="G@@svc")).text == ":G:naming/svc"
    assert status_key_resource(params(key="svc")).text == ":DEFAULT_GROUP:naming/svc"


# -- decisions against a real (in-memory) accounts service ----------------------------------


@pytest.fixture(scope="module")
def runtime() -> Iterator[NodeRuntime]:
    rt = in_memory_runtime()
    accounts.auth.install(None, rt.accounts)
    svc = rt.accounts
    svc.ensure_admin("admin-pw-1", lambda: "unused")
    for name in ("reader", "writer", "grouped", "nobody"):
        svc.create_user(name, "password-1")
    grants = {
        "reader": [("dev:*:*", "r")],
        "writer": [("dev:*:*", "rw"), (":*:*", "r")],
        "grouped": [("dev:GRP:*", "rw")],
    }
    for user, rules in grants.items():
        svc.bind_role(f"ROLE_{user}", user)
        for resource, action in rules:
            svc.add_permission(f"ROLE_{user}", resource, action)
    wait_until(lambda: svc.directory().permissions_of(["ROLE_grouped"]) != [])
    try:
        yield rt
    finally:
        accounts.auth.install(None, None)
        rt.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def who(name: str, admin: bool = False) -> Identity:
    return Identity(name, admin)


def test_decision_order(runtime: NodeRuntime) -> None:
    dev_svc = Resource.naming("dev", "G", "svc")
    assert can(None, W, Resource.console("users"))  # auth off: everything
    # The admin passes everything, the console included, even without the flag on the token.
    assert can(who("nacos"), W, Resource.console("users"))
    assert can(who("nacos"), Action.ADMIN, Resource.console("operator/switches"))
    # console/ is admin-only whatever a role holds; ADMIN is never granted by a permission.
    assert not can(who("writer"), R, Resource.console("namespaces"))
    assert not can(who("writer"), Action.ADMIN, dev_svc)
    assert can(who("reader"), R, dev_svc) and not can(who("reader"), W, dev_svc)
    assert can(who("writer"), W, dev_svc)
    assert can(who("writer"), R, Resource.naming("public", "G", "x"))
    assert not can(who("writer"), W, Resource.naming("public", "G", "x"))
    assert can(who("grouped"), W, Resource.naming("dev", "GRP", "svc"))
    assert not can(who("grouped"), R, Resource.naming("dev"))
    assert not can(who("nobody"), R, dev_svc)  # no role: nothing
    assert not can(who("ghost"), R, dev_svc)  # unknown user: nothing
    with pytest.raises(Forbidden, match="authorization failed!"):
        authorize(who("reader"), W, dev_svc)


def test_readable_namespaces(runtime: NodeRuntime) -> None:
    ids = ["public", "dev", "prod"]
    assert readable_namespaces(None, ids) == ids
    assert readable_namespaces(who("nacos", admin=True), ids) == ids
    assert readable_namespaces(who("reader"), ids) == ["dev"]
    assert readable_namespaces(who("writer"), ids) == ["public", "dev"]
    assert readable_namespaces(who("grouped"), ids) == ["dev"]  # it may read one group there
    assert readable_namespaces(who("nobody"), ids) == []


def test_decisions_are_cached_and_dropped_when_the_accounts_change(runtime: NodeRuntime) -> None:
    svc: AccountsService = runtime.accounts
    prod = Resource.naming("prod", "G", "svc")
    assert not can(who("reader"), R, prod)
    before = decision_stats()
    assert not can(who("reader"), R, prod)
    after = decision_stats()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]

    svc.add_permission("ROLE_reader", "prod:*:*", "r")
    wait_until(lambda: can(who("reader"), R, prod), timeout=2.0)
    svc.remove_permission("ROLE_reader", "prod:*:*", "r")
    wait_until(lambda: not can(who("reader"), R, prod), timeout=2.0)

    # Unbinding the role takes every permission it gave, at once.
    dev_svc = Resource.naming("dev", "G", "svc")
    assert can(who("reader"), R, dev_svc)
    svc.unbind_role("ROLE_reader", "reader")
    wait_until(lambda: not can(who("reader"), R, dev_svc), timeout=2.0)
