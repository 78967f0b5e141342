"""The console's JSON endpoints and the account API through a real node with auth on (issue #10
items 2-4 and the bad-input acceptance): Nacos's shapes and messages, who may call what, the
account invariants, and bad input answered 4xx with a message while nothing stored changes."""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import HttpResult, NodeProcess, running_node

AUTH = "/nacos/v1/auth"
NAMESPACES = "/nacos/v1/console/namespaces"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("console-api"))) as n:
        yield n


def call(
    node: NodeProcess,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    token: str | None = None,
    form: dict[str, Any] | None = None,
) -> HttpResult:
    """Parameters in the query string, ``form`` as a urlencoded body (what the Nacos UI sends)."""
    query = {**(params or {}), **({"accessToken": token} if token else {})}
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    return node.request(method, path, query, body=body, headers=FORM if form is not None else None)


def admin(node: NodeProcess, method: str, path: str, **params: Any) -> HttpResult:
    return call(node, method, path, params, node.token())


def ok(result: HttpResult) -> Any:
    assert result.status == 200, result.text
    return result.json()


def login(node: NodeProcess, username: str, password: str) -> str:
    result = call(node, "POST", AUTH + "/login", {"username": username, "password": password})
    return str(ok(result)["accessToken"])


def new_name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def user_with(node: NodeProcess, *grants: tuple[str, str]) -> tuple[str, str]:
    """A fresh user holding ``grants`` ((resource, action) pairs) through a role of its own;
    returns (username, token)."""
    username, password = new_name(), secrets.token_hex(8)
    node.create_user(username, password, grants=tuple(grants))
    return username, login(node, username, password)


def without_passwords(value: Any) -> None:
    """No ``password`` key anywhere in an answer, and nothing that looks like a Django hash."""
    if isinstance(value, dict):
        assert "password" not in value, value
        for item in value.values():
            without_passwords(item)
    elif isinstance(value, list):
        for item in value:
            without_passwords(item)
    elif isinstance(value, str):
        assert "pbkdf2_" not in value and "$" not in value, value


def listing(node: NodeProcess) -> dict[str, Any]:
    """Everything the bad-input tests must leave alone: the full user, binding, permission and
    namespace listings as an admin sees them."""
    big = {"pageNo": 1, "pageSize": 1000}
    return {
        "users": ok(admin(node, "GET", AUTH + "/users", **big))["pageItems"],
        "roles": ok(admin(node, "GET", AUTH + "/roles", **big))["pageItems"],
        "permissions": ok(admin(node, "GET", AUTH + "/permissions", **big))["pageItems"],
        "namespaces": ok(admin(node, "GET", NAMESPACES))["data"],
    }


def register(node: NodeProcess, service: str, namespace: str = "", port: int = 8080) -> None:
    result = node.api(
        "POST",
        "/instance",
        {
            "serviceName": service,
            "ip": "127.0.0.1",
            "port": port,
            "namespaceId": namespace,
            "ephemeral": "false",
        },
    )
    assert result.text == "ok", result.text


# -- namespaces ---------------------------------------------------------------------------------


PUBLIC = {
    "namespace": "",
    "namespaceShowName": "public",
    "namespaceDesc": "Public Namespace",
    "quota": 200,
    "configCount": 0,
    "type": 0,
}


def test_namespace_list_needs_a_login_and_has_the_nacos_shape(node: NodeProcess):
    anonymous = call(node, "GET", NAMESPACES)
    assert (anonymous.status, anonymous.text) == (403, "user not found!")
    bad_token = call(node, "GET", NAMESPACES, token="not-a-token")
    assert (bad_token.status, bad_token.text) == (403, "token invalid!")

    body = ok(admin(node, "GET", NAMESPACES))
    assert body["code"] == 200 and body["message"] is None
    public = body["data"][0]
    assert {k: public[k] for k in PUBLIC} == PUBLIC
    assert public["implicit"] is False
    assert {"serviceCount", "instanceCount", "healthyInstanceCount"} <= set(public)


def test_namespace_create_detail_edit_delete(node: NodeProcess):
    ns = new_name("ns-")
    # The Nacos UI sends a form body.
    created = call(
        node,
        "POST",
        NAMESPACES,
        token=node.token(),
        form={"customNamespaceId": ns, "namespaceName": "Dev <b>", "namespaceDesc": "for dev"},
    )
    assert (created.status, created.text) == (200, "true")

    exists = admin(node, "GET", NAMESPACES, checkNamespaceIdExist="true", customNamespaceId=ns)
    assert exists.json() is True
    missing = admin(node, "GET", NAMESPACES, checkNamespaceIdExist="true", customNamespaceId="zz")
    assert missing.json() is False
    blank = admin(node, "GET", NAMESPACES, checkNamespaceIdExist="true", customNamespaceId="")
    assert blank.json() is False

    detail = ok(admin(node, "GET", NAMESPACES, show="all", namespaceId=ns))
    assert detail == {
        "namespace": ns,
        "namespaceShowName": "Dev <b>",
        "namespaceDesc": "for dev",
        "quota": 200,
        "configCount": 0,
        "type": 2,
        "serviceCount": 0,
        "instanceCount": 0,
        "healthyInstanceCount": 0,
        "implicit": False,
    }
    public = ok(admin(node, "GET", NAMESPACES, show="all", namespaceId=""))
    assert {k: public[k] for k in PUBLIC} == PUBLIC
    unknown = admin(node, "GET", NAMESPACES, show="all", namespaceId="no-such-ns")
    assert (unknown.status, unknown.text) == (404, "caused: namespaceId [ no-such-ns ] not exist;")

    edited = call(
        node,
        "PUT",
        NAMESPACES,
        token=node.token(),
        form={"namespace": ns, "namespaceShowName": "Dev 2", "namespaceDesc": "edited"},
    )
    assert (edited.status, edited.text) == (200, "true")
    row = next(n for n in ok(admin(node, "GET", NAMESPACES))["data"] if n["namespace"] == ns)
    assert (row["namespaceShowName"], row["namespaceDesc"], row["type"]) == ("Dev 2", "edited", 2)

    deleted = admin(node, "DELETE", NAMESPACES, namespaceId=ns)
    assert (deleted.status, deleted.text) == (200, "true")
    assert ns not in [n["namespace"] for n in ok(admin(node, "GET", NAMESPACES))["data"]]
    again = admin(node, "DELETE", NAMESPACES, namespaceId=ns)
    assert (again.status, again.text) == (404, f"caused: namespaceId [ {ns} ] not exist;")


def test_namespace_generated_id_implicit_namespaces_and_the_delete_guard(node: NodeProcess):
    name = new_name("generated ")
    assert admin(node, "POST", NAMESPACES, customNamespaceId="", namespaceName=name).json()
    row = next(
        n for n in ok(admin(node, "GET", NAMESPACES))["data"] if n["namespaceShowName"] == name
    )
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", row["namespace"]
    )

    # A namespace a client registered into without creating it is listed, marked implicit.
    implicit = new_name("impl-")
    register(node, "svc-implicit", implicit)
    row = next(n for n in ok(admin(node, "GET", NAMESPACES))["data"] if n["namespace"] == implicit)
    assert (row["type"], row["implicit"], row["serviceCount"], row["instanceCount"]) == (
        2,
        True,
        1,
        1,
    )
    assert admin(node, "GET", NAMESPACES, show="all", namespaceId=implicit).json()["implicit"]

    # A namespace that still holds services is not deleted (Nacos orphans them).
    held = new_name("held-")
    assert admin(node, "POST", NAMESPACES, customNamespaceId=held, namespaceName=held).json()
    register(node, "svc-held", held)
    refused = admin(node, "DELETE", NAMESPACES, namespaceId=held)
    assert refused.status == 400 and "still holds 1 service" in refused.text, refused.text
    assert held in [n["namespace"] for n in ok(admin(node, "GET", NAMESPACES))["data"]]

    public = admin(node, "DELETE", NAMESPACES, namespaceId="public")
    assert public.status == 400 and "public" in public.text


def test_namespaces_a_user_sees_are_the_ones_it_may_read(node: NodeProcess):
    dev, other = new_name("dev-"), new_name("other-")
    for ns in (dev, other):
        assert admin(node, "POST", NAMESPACES, customNamespaceId=ns, namespaceName=ns).json()

    _, reader = user_with(node, (f"{dev}:*:*", "r"))
    seen = [n["namespace"] for n in ok(call(node, "GET", NAMESPACES, token=reader))["data"]]
    assert seen == [dev]
    _, grouped = user_with(node, (f"{dev}:GROUP_A:*", "rw"))
    seen = [n["namespace"] for n in ok(call(node, "GET", NAMESPACES, token=grouped))["data"]]
    assert seen == [dev]
    _, public_only = user_with(node, (":*:*", "rw"))
    seen = [n["namespace"] for n in ok(call(node, "GET", NAMESPACES, token=public_only))["data"]]
    assert seen == [""]
    _, writer_only = user_with(node, (f"{dev}:*:*", "w"))
    assert ok(call(node, "GET", NAMESPACES, token=writer_only))["data"] == []

    assert call(node, "GET", NAMESPACES, {"show": "all", "namespaceId": dev}, reader).status == 200
    for params in (
        {"show": "all", "namespaceId": other},
        {"show": "all", "namespaceId": "no-such-ns"},  # refused before it is looked up
        {"checkNamespaceIdExist": "true", "customNamespaceId": dev},
    ):
        refused = call(node, "GET", NAMESPACES, params, reader)
        assert (refused.status, refused.text) == (403, "authorization failed!"), params

    # Namespace writes are console/namespaces: admin only, whatever the user's permissions.
    before = listing(node)
    for method, params in (
        ("POST", {"customNamespaceId": new_name("x-"), "namespaceName": "x"}),
        ("PUT", {"namespace": dev, "namespaceShowName": "taken over"}),
        ("DELETE", {"namespaceId": dev}),
    ):
        refused = call(node, method, NAMESPACES, params, reader)
        assert (refused.status, refused.text) == (403, "authorization failed!"), method
    assert listing(node) == before


# -- server state and health --------------------------------------------------------------------


def test_server_state_and_health_are_public(node: NodeProcess):
    state = ok(call(node, "GET", "/nacos/v1/console/server/state"))
    assert state == {
        "startup_mode": "standalone",
        "standalone_mode": "standalone",
        "function_mode": "naming",
        "version": state["version"],
        "server_port": str(node.port),
        "auth_enabled": "true",
        "login_page_enabled": "true",
        "auth_system_type": "nacos",
        "auth_admin_request": "false",
        "console_ui_enabled": "true",
    }
    assert state["version"]
    live = call(node, "GET", "/nacos/v1/console/health/liveness")
    assert (live.status, live.text) == (200, "OK")
    ready = call(node, "GET", "/nacos/v1/console/health/readiness")
    assert (ready.status, ready.text) == (200, "OK")

    switches = "/nacos/v1/ns/operator/switches"
    assert (
        node.api(
            "PUT", "/operator/switches", {"entry": "overriddenServerStatus", "value": "DOWN"}
        ).text
        == "ok"
    )
    try:
        not_ready = call(node, "GET", "/nacos/v1/console/health/readiness")
        assert (not_ready.status, not_ready.text) == (500, "Naming is not in readiness")
        # The probes and the state stay reachable while the node refuses traffic.
        assert call(node, "GET", "/nacos/v1/console/health/liveness").status == 200
        assert call(node, "GET", "/nacos/v1/console/server/state").status == 200
    finally:
        reset = call(
            node,
            "PUT",
            switches,
            {"entry": "overriddenServerStatus", "value": "null"},
            node.token(),
        )
        assert reset.text == "ok", reset.text
    assert call(node, "GET", "/nacos/v1/console/health/readiness").status == 200


def test_first_admin_through_the_api(tmp_path: Path):
    """Started without the bootstrap admin (NAMING_ADMIN_BOOTSTRAP=false): the console is told to
    ask for one, the first call creates it, every later one gets Nacos's 409 body."""
    with running_node(tmp_path / "node", env={"NAMING_ADMIN_BOOTSTRAP": "false"}) as fresh:
        state = ok(call(fresh, "GET", "/nacos/v1/console/server/state"))
        assert state["auth_admin_request"] == "true"
        short = call(fresh, "POST", AUTH + "/users/admin", {"password": "short"})
        assert short.status == 400 and "at least 8" in short.text, short.text

        created = ok(call(fresh, "POST", AUTH + "/users/admin", form={"password": ""}))
        assert created["username"] == "nacos" and len(created["password"]) >= 10
        token = login(fresh, "nacos", created["password"])
        assert ok(call(fresh, "GET", NAMESPACES, token=token))["code"] == 200
        assert (
            ok(call(fresh, "GET", "/nacos/v1/console/server/state"))["auth_admin_request"]
            == "false"
        )

        again = ok(call(fresh, "POST", AUTH + "/users/admin", {"password": "another-password"}))
        assert again == {"code": 409, "message": None, "data": "have admin user cannot use it"}
        login(fresh, "nacos", created["password"])  # unchanged


def test_first_admin_with_a_chosen_password(tmp_path: Path):
    with running_node(tmp_path / "node", env={"NAMING_ADMIN_BOOTSTRAP": "false"}) as fresh:
        created = ok(call(fresh, "POST", AUTH + "/users/admin", {"password": "chosen-password"}))
        assert created == {"username": "nacos", "password": "chosen-password"}
        login(fresh, "nacos", "chosen-password")


def test_admin_endpoint_refuses_once_an_admin_exists(node: NodeProcess):
    before = listing(node)
    again = ok(call(node, "POST", AUTH + "/users/admin", {"password": "another-password"}))
    assert again == {"code": 409, "message": None, "data": "have admin user cannot use it"}
    assert listing(node) == before


# -- users ----------------------------------------------------------------------------------------


def test_users_paged_list_search_and_no_password_anywhere(node: NodeProcess):
    prefix = new_name("page")
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        created = admin(node, "POST", AUTH + "/users", username=name, password="password-1")
        assert ok(created) == {"code": 200, "message": "create user ok!", "data": None}

    page = ok(
        admin(node, "GET", AUTH + "/users", pageNo=2, pageSize=2, search="blur", username=prefix)
    )
    assert (page["totalCount"], page["pageNumber"], page["pagesAvailable"]) == (5, 2, 3)
    assert [u["username"] for u in page["pageItems"]] == names[2:4]
    blur = ok(admin(node, "GET", AUTH + "/users", search="blur", username=f"*{prefix}*"))
    assert [u["username"] for u in blur["pageItems"]] == names
    exact = ok(admin(node, "GET", AUTH + "/users", search="accurate", username=names[1]))
    assert [u["username"] for u in exact["pageItems"]] == [names[1]]
    assert (
        ok(admin(node, "GET", AUTH + "/users", search="accurate", username=prefix))["totalCount"]
        == 0
    )
    assert ok(admin(node, "GET", AUTH + "/users/search", username=prefix)) == names

    everything = [
        admin(node, "GET", AUTH + "/users", pageSize=1000),
        admin(node, "GET", AUTH + "/roles", pageSize=1000),
        admin(node, "GET", AUTH + "/permissions", pageSize=1000),
        admin(node, "GET", AUTH + "/users/search", username=""),
        admin(node, "GET", AUTH + "/roles/search", role=""),
        admin(node, "GET", NAMESPACES),
    ]
    for result in everything:
        without_passwords(ok(result))
    # The login answer carries a token, never the password or its hash.
    answer = ok(
        call(node, "POST", AUTH + "/login", {"username": names[0], "password": "password-1"})
    )
    assert set(answer) == {"accessToken", "tokenTtl", "globalAdmin", "username"}


def test_user_create_duplicate_reset_and_delete(node: NodeProcess):
    name = new_name()
    assert ok(admin(node, "POST", AUTH + "/users", username=name, password="first-pass"))
    duplicate = admin(node, "POST", AUTH + "/users", username=name, password="other-pass")
    assert (duplicate.status, duplicate.text) == (400, f"caused: user '{name}' already exist!;")
    login(node, name, "first-pass")  # the duplicate changed nothing

    # An admin resets anyone's password; the old one stops working.
    reset = admin(node, "PUT", AUTH + "/users", username=name, newPassword="second-pass")
    assert ok(reset)["message"] == "update user ok!"
    assert (
        call(node, "POST", AUTH + "/login", {"username": name, "password": "first-pass"}).status
        == 403
    )
    token = login(node, name, "second-pass")

    # A user resets its own, and nobody else's.
    mine = call(
        node, "PUT", AUTH + "/users", {"username": name, "newPassword": "third-pass"}, token
    )
    assert ok(mine)["message"] == "update user ok!"
    token = login(node, name, "third-pass")
    before = listing(node)
    others = call(
        node, "PUT", AUTH + "/users", {"username": "nacos", "newPassword": "hijacked!"}, token
    )
    assert (others.status, others.text) == (403, "authorization failed!")
    for method, path, params in (
        ("GET", "/users", {}),
        ("POST", "/users", {"username": new_name(), "password": "password-1"}),
        ("DELETE", "/users", {"username": name}),
        ("GET", "/roles", {}),
        ("POST", "/roles", {"role": "ROLE_X", "username": name}),
        ("GET", "/permissions", {}),
        ("POST", "/permissions", {"role": f"ROLE_{name}", "resource": ":*:*", "action": "rw"}),
        ("GET", "/users/search", {"username": ""}),
        ("GET", "/roles/search", {"role": ""}),
    ):
        refused = call(node, method, AUTH + path, params, token)
        assert (refused.status, refused.text) == (403, "authorization failed!"), (method, path)
    assert listing(node) == before
    login(node, "nacos", node.admin_password)

    deleted = admin(node, "DELETE", AUTH + "/users", username=name)
    assert ok(deleted)["message"] == "delete user ok!"
    assert (
        call(node, "POST", AUTH + "/login", {"username": name, "password": "third-pass"}).status
        == 403
    )
    assert call(node, "GET", NAMESPACES, token=token).status == 403  # its token died with it

    refused = admin(node, "DELETE", AUTH + "/users", username="nacos")
    assert (refused.status, refused.text) == (400, "caused: cannot delete admin: nacos;")


# -- roles and permissions ------------------------------------------------------------------------


def test_roles_bind_unbind_search_and_refusals(node: NodeProcess):
    name = new_name()
    assert ok(admin(node, "POST", AUTH + "/users", username=name, password="password-1"))
    role = f"ROLE_{name.upper()}"
    bound = admin(node, "POST", AUTH + "/roles", role=role, username=name)
    assert ok(bound) == {"code": 200, "message": "add role ok!", "data": None}
    page = ok(admin(node, "GET", AUTH + "/roles", username=name))
    assert page["pageItems"] == [{"role": role, "username": name}]
    assert ok(admin(node, "GET", AUTH + "/roles/search", role=name.upper())) == [role]
    blur = ok(admin(node, "GET", AUTH + "/roles", search="blur", role=f"*{name.upper()[1:]}*"))
    assert blur["pageItems"] == [{"role": role, "username": name}]

    for params, message in (
        ({"role": "ROLE_ADMIN", "username": name}, "role 'ROLE_ADMIN' is not permitted to create!"),
        ({"role": role, "username": "ghost"}, "user 'ghost' not found!"),
        ({"role": role, "username": name}, f"user '{name}' already bound to the role '{role}'!"),
    ):
        refused = admin(node, "POST", AUTH + "/roles", **params)
        assert (refused.status, refused.text) == (400, f"caused: {message};"), params

    last_admin = admin(node, "DELETE", AUTH + "/roles", role="ROLE_ADMIN", username="nacos")
    assert last_admin.status == 400 and "last ROLE_ADMIN" in last_admin.text, last_admin.text
    whole_admin_role = admin(node, "DELETE", AUTH + "/roles", role="ROLE_ADMIN")
    assert whole_admin_role.status == 400
    login(node, "nacos", node.admin_password)

    unbound = admin(node, "DELETE", AUTH + "/roles", role=role, username=name)
    assert ok(unbound)["message"] == f"delete role of user {name} ok!"
    assert ok(admin(node, "GET", AUTH + "/roles", username=name))["pageItems"] == []
    gone = admin(node, "DELETE", AUTH + "/roles", role=role, username=name)
    assert gone.status == 400 and "not found" in gone.text


def test_permissions_add_check_delete_and_refusals(node: NodeProcess):
    name = new_name()
    role = f"ROLE_{name}"
    assert ok(admin(node, "POST", AUTH + "/users", username=name, password="password-1"))
    assert ok(admin(node, "POST", AUTH + "/roles", role=role, username=name))

    added = admin(node, "POST", AUTH + "/permissions", role=role, resource="dev:*:*", action="rw")
    assert ok(added) == {"code": 200, "message": "add permission ok!", "data": None}
    # ``public`` is stored as the blank namespace, what a request's resource says.
    assert ok(
        admin(node, "POST", AUTH + "/permissions", role=role, resource="public:*:*", action="r")
    )
    page = ok(admin(node, "GET", AUTH + "/permissions", role=role))
    assert page["pageItems"] == [
        {"role": role, "resource": ":*:*", "action": "r"},
        {"role": role, "resource": "dev:*:*", "action": "rw"},
    ]

    def covered(resource: str, action: str) -> bool:
        check = admin(
            node, "GET", AUTH + "/permissions", role=role, resource=resource, action=action
        )
        return bool(ok(check)["data"])

    assert covered("dev:*:*", "r") and covered("dev:*:*", "rw")  # rw covers r
    assert covered("public:*:*", "r") and not covered(":*:*", "w")
    assert not covered("other:*:*", "r")
    malformed = admin(node, "GET", AUTH + "/permissions", role=role, resource="dev", action="r")
    assert malformed.status == 400 and "malformed resource" in malformed.text

    for params, message in (
        (
            {"role": "ROLE_NOBODY", "resource": "dev:*:*", "action": "r"},
            "role ROLE_NOBODY not found!",
        ),
        ({"role": role, "resource": "dev", "action": "r"}, "malformed resource 'dev'"),
        ({"role": role, "resource": "dev:*", "action": "r"}, "malformed resource 'dev:*'"),
        ({"role": role, "resource": "d v:*:*", "action": "r"}, "malformed resource"),
        ({"role": role, "resource": "dev:*:*", "action": "x"}, "action must be one of r, w, rw"),
        ({"role": role, "resource": "dev:*:*", "action": "rw"}, "already granted"),
    ):
        refused = admin(node, "POST", AUTH + "/permissions", **params)
        assert refused.status == 400 and message in refused.text, (params, refused.text)

    removed = admin(
        node, "DELETE", AUTH + "/permissions", role=role, resource="dev:*:*", action="rw"
    )
    assert ok(removed)["message"] == "delete permission ok!"
    assert not covered("dev:*:*", "r")
    again = admin(node, "DELETE", AUTH + "/permissions", role=role, resource="dev:*:*", action="rw")
    assert again.status == 400 and "not found" in again.text


def test_deletions_cascade_and_a_recreated_user_starts_clean(node: NodeProcess):
    name = new_name()
    role, shared = f"ROLE_{name}", f"ROLE_SHARED_{name}"
    node.create_user(name, "password-1", grants=((":*:*", "rw"),), role=role)
    other = new_name()
    node.create_user(other, "password-1", grants=(("dev:*:*", "r"),), role=shared)
    assert ok(admin(node, "POST", AUTH + "/roles", role=shared, username=name))

    # Deleting the user removes its bindings; its own role, left without holders, loses its
    # permissions; the shared role keeps its other holder and its permissions.
    assert ok(admin(node, "DELETE", AUTH + "/users", username=name))
    roles = ok(admin(node, "GET", AUTH + "/roles", pageSize=1000))["pageItems"]
    assert not [r for r in roles if r["username"] == name]
    permissions = ok(admin(node, "GET", AUTH + "/permissions", pageSize=1000))["pageItems"]
    assert not [p for p in permissions if p["role"] == role]
    assert [p for p in permissions if p["role"] == shared]

    # Removing every binding of a role removes its permissions.
    assert ok(admin(node, "DELETE", AUTH + "/roles", role=shared))
    permissions = ok(admin(node, "GET", AUTH + "/permissions", pageSize=1000))["pageItems"]
    assert not [p for p in permissions if p["role"] == shared]
    refused = admin(node, "POST", AUTH + "/permissions", role=shared, resource=":*:*", action="r")
    assert (refused.status, refused.text) == (400, f"caused: role {shared} not found!;")

    # The same name again: no roles, no permissions, no access.
    assert ok(admin(node, "POST", AUTH + "/users", username=name, password="password-2"))
    assert ok(admin(node, "GET", AUTH + "/roles", username=name))["pageItems"] == []
    token = login(node, name, "password-2")
    assert ok(call(node, "GET", NAMESPACES, token=token))["data"] == []
    listed = call(node, "GET", "/nacos/v1/ns/instance/list", {"serviceName": "any"}, token)
    assert (listed.status, listed.text) == (403, "authorization failed!")


# -- bad input everywhere: a 4xx with a message, and nothing stored changes --------------------


LONG = "x" * 300


def bad_inputs(user: str, role: str, namespace: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        # users
        ("POST", AUTH + "/users", {"password": "password-1"}),
        ("POST", AUTH + "/users", {"username": new_name()}),
        ("POST", AUTH + "/users", {"username": new_name(), "password": ""}),
        ("POST", AUTH + "/users", {"username": new_name(), "password": "short"}),
        ("POST", AUTH + "/users", {"username": new_name(), "password": "p" * 129}),
        ("POST", AUTH + "/users", {"username": "u" * 65, "password": "password-1"}),
        ("POST", AUTH + "/users", {"username": "bad name", "password": "password-1"}),
        ("POST", AUTH + "/users", {"username": "<script>", "password": "password-1"}),
        ("POST", AUTH + "/users", {"username": user, "password": "password-1"}),
        ("PUT", AUTH + "/users", {"username": user}),
        ("PUT", AUTH + "/users", {"username": user, "newPassword": ""}),
        ("PUT", AUTH + "/users", {"username": user, "newPassword": "short"}),
        ("PUT", AUTH + "/users", {"username": "ghost", "newPassword": "password-1"}),
        ("DELETE", AUTH + "/users", {}),
        ("DELETE", AUTH + "/users", {"username": "ghost"}),
        ("DELETE", AUTH + "/users", {"username": "nacos"}),
        ("GET", AUTH + "/users", {"pageNo": 0}),
        ("GET", AUTH + "/users", {"pageSize": "many"}),
        ("GET", AUTH + "/users", {"search": "regex"}),
        # roles
        ("POST", AUTH + "/roles", {"username": user}),
        ("POST", AUTH + "/roles", {"role": role}),
        ("POST", AUTH + "/roles", {"role": "R" * 65, "username": user}),
        ("POST", AUTH + "/roles", {"role": "ROLE X", "username": user}),
        ("POST", AUTH + "/roles", {"role": "ROLE_ADMIN", "username": user}),
        ("POST", AUTH + "/roles", {"role": role, "username": "ghost"}),
        ("POST", AUTH + "/roles", {"role": role, "username": user}),
        ("DELETE", AUTH + "/roles", {}),
        ("DELETE", AUTH + "/roles", {"role": "ROLE_NOBODY"}),
        ("DELETE", AUTH + "/roles", {"role": "ROLE_ADMIN", "username": "nacos"}),
        # permissions
        ("POST", AUTH + "/permissions", {"role": role, "resource": ":*:*"}),
        ("POST", AUTH + "/permissions", {"role": role, "action": "r"}),
        ("POST", AUTH + "/permissions", {"role": "ROLE_NOBODY", "resource": ":*:*", "action": "r"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": "dev", "action": "r"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": LONG, "action": "r"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": "a:b:c" + LONG, "action": "r"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": ":*:*", "action": "rwx"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": ":*:*", "action": "x"}),
        ("POST", AUTH + "/permissions", {"role": role, "resource": ":*:*", "action": "rw"}),
        ("POST", AUTH + "/permissions", {"role": "ROLE_ADMIN", "resource": ":*:*", "action": "r"}),
        ("DELETE", AUTH + "/permissions", {"role": role, "resource": "zz:*:*", "action": "r"}),
        ("DELETE", AUTH + "/permissions", {"role": role}),
        # namespaces
        ("POST", NAMESPACES, {"customNamespaceId": "bad id", "namespaceName": "x"}),
        ("POST", NAMESPACES, {"customNamespaceId": "dot.ted", "namespaceName": "x"}),
        ("POST", NAMESPACES, {"customNamespaceId": "n" * 129, "namespaceName": "x"}),
        ("POST", NAMESPACES, {"customNamespaceId": namespace, "namespaceName": "x"}),
        ("POST", NAMESPACES, {"customNamespaceId": "public", "namespaceName": "x"}),
        ("POST", NAMESPACES, {"customNamespaceId": new_name("n-")}),
        ("POST", NAMESPACES, {"customNamespaceId": new_name("n-"), "namespaceName": "a@b"}),
        ("POST", NAMESPACES, {"customNamespaceId": new_name("n-"), "namespaceName": LONG}),
        (
            "POST",
            NAMESPACES,
            {"customNamespaceId": new_name("n-"), "namespaceName": "x", "namespaceDesc": LONG},
        ),
        ("PUT", NAMESPACES, {"namespaceShowName": "x"}),
        ("PUT", NAMESPACES, {"namespace": "no-such-ns", "namespaceShowName": "x"}),
        ("PUT", NAMESPACES, {"namespace": "public", "namespaceShowName": "x"}),
        ("PUT", NAMESPACES, {"namespace": namespace, "namespaceShowName": ""}),
        ("PUT", NAMESPACES, {"namespace": namespace, "namespaceShowName": "a*b"}),
        ("PUT", NAMESPACES, {"namespace": "bad id", "namespaceShowName": "x"}),
        ("DELETE", NAMESPACES, {}),
        ("DELETE", NAMESPACES, {"namespaceId": "no-such-ns"}),
        ("DELETE", NAMESPACES, {"namespaceId": "public"}),
        ("DELETE", NAMESPACES, {"namespaceId": "bad id"}),
        ("GET", NAMESPACES, {"show": "all", "namespaceId": "bad id"}),
        ("GET", NAMESPACES, {"checkNamespaceIdExist": "true", "customNamespaceId": "bad id"}),
        # the first admin
        ("POST", AUTH + "/users/admin", {"password": "short"}),
    ]


def test_bad_input_gets_a_4xx_with_a_message_and_changes_nothing(node: NodeProcess):
    user = new_name()
    role = f"ROLE_{user}"
    node.create_user(user, "password-1", grants=((":*:*", "rw"),), role=role)
    namespace = new_name("bad-input-")
    assert admin(node, "POST", NAMESPACES, customNamespaceId=namespace, namespaceName="ns").json()
    before = listing(node)
    failures = []
    for i, (method, path, params) in enumerate(bad_inputs(user, role, namespace)):
        # Every other one as the form body the console sends, the rest as query parameters.
        if i % 2 and method != "GET":
            result = call(node, method, path, token=node.token(), form=params)
        else:
            result = admin(node, method, path, **params)
        if not 400 <= result.status < 500 or len(result.text.strip()) < 10:
            failures.append((method, path, params, result.status, result.text))
    assert failures == []
    assert listing(node) == before
    login(node, user, "password-1")
    login(node, "nacos", node.admin_password)


def test_malformed_bodies_are_refused(node: NodeProcess):
    before = listing(node)
    headers = {"Content-Type": "application/json"}
    for path in (AUTH + "/users", AUTH + "/roles", AUTH + "/permissions"):
        for body in (b"[1, 2]", b"{not json", b'"text"'):
            result = node.request(
                "POST", path, {"accessToken": node.token()}, body=body, headers=headers
            )
            assert 400 <= result.status < 500 and result.text, (path, body, result.text)
    assert listing(node) == before
    assert json.loads(admin(node, "GET", NAMESPACES).text)["code"] == 200
