"""The administration pages in a real browser: users, roles, permissions (and their
enforcement on the naming pages), own password, cluster members, the audit log."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from testkit.harness import NodeProcess

from .conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ADMIN_PAGES = ("users", "roles", "permissions", "audit")


def _name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def _api_login(node: NodeProcess, username: str, password: str) -> int:
    return node.request(
        "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
    ).status


def _row(page, table: str, text: str):
    return page.locator(f"#{table} tbody tr", has_text=text)


def test_a_non_admin_sees_no_authority_menu_and_gets_403_pages(page, console_node):
    username, password = _name("viewer"), "viewer-pass-1"
    console_node.create_user(username, password, grants=((":*:*", "r"),))
    login(page, console_node, username, password)
    expect(page.locator("#current-user")).to_have_text(username)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    expect(page.get_by_text("Authority:")).to_have_count(0)
    for name in ADMIN_PAGES:
        response = page.goto(f"/nacos/console/{name}")
        assert response is not None and response.status == 403, name
        expect(page.get_by_role("alert")).to_contain_text("for administrators (ROLE_ADMIN) only")
    # A hand-made POST with a valid CSRF token is refused the same way: the server decides.
    status = page.evaluate(
        """async () => {
          const token = document.querySelector('meta[name="csrf-token"]').content;
          const answer = await fetch('/nacos/console/users/create', {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRFToken': token},
            body: 'username=forged&password=forged-pass-1&repeat=forged-pass-1'});
          return answer.status;
        }"""
    )
    assert status == 403
    listed = console_node.admin_call("GET", "/users", {"username": "forged"})
    assert listed.json()["totalCount"] == 0
    response = page.goto("/nacos/console/cluster")
    assert response is not None and response.status == 200
    expect(_row(page, "members", console_node.address)).to_be_visible()


def test_users_create_reset_delete(admin, console_node):
    page = admin
    username = _name("user")
    page.goto("/nacos/console/users")
    expect(page.get_by_role("link", name="Users")).to_be_visible()
    form = page.locator("form[action='/nacos/console/users/create']")

    def create(name: str, password: str, repeat: str) -> None:
        form.get_by_label("Username").fill(name)
        form.get_by_label("Password", exact=True).fill(password)
        form.get_by_label("Repeat password").fill(repeat)
        form.get_by_role("button", name="Create user").click()

    create(username, "first-pass-1", "other-pass-1")
    expect(page.locator("#error")).to_have_text("the two passwords do not match")
    expect(_row(page, "users", username)).to_have_count(0)
    create("x" * 300, "first-pass-1", "first-pass-1")
    expect(page.locator("#error")).to_contain_text("username is too long")
    create(username, "first-pass-1", "first-pass-1")
    expect(page.get_by_role("status")).to_have_text(f"user {username} created")
    expect(_row(page, "users", username).locator("td").nth(1)).to_have_text("no")
    create(username, "first-pass-1", "first-pass-1")
    expect(page.locator("#error")).to_have_text(f"user '{username}' already exist!")
    expect(page.locator("#users")).not_to_contain_text("pbkdf2")
    expect(_row(page, "users", "nacos").locator("td").nth(1)).to_have_text("yes")
    shot(page, "users")
    # Search by name.
    page.get_by_label("Search by name").fill(username[:-1])
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#users tbody tr")).to_have_count(1)

    # Reset the password: the repeat is required, then the new one works and the old not.
    _row(page, "users", username).get_by_role("link", name="Reset password").click()
    page.get_by_label("New password", exact=True).fill("second-pass-2")
    page.get_by_label("Repeat new password").fill("second-pass-3")
    page.get_by_role("button", name="Reset password").click()
    expect(page.locator("#error")).to_have_text("the two passwords do not match")
    page.get_by_label("New password", exact=True).fill("second-pass-2")
    page.get_by_label("Repeat new password").fill("second-pass-2")
    page.get_by_role("button", name="Reset password").click()
    expect(page.get_by_role("status")).to_contain_text(f"the password of {username} was reset")
    assert _api_login(console_node, username, "second-pass-2") == 200
    assert _api_login(console_node, username, "first-pass-1") == 403

    # Deleting the admin is refused, visibly; deleting the user asks first.
    _row(page, "users", "nacos").get_by_role("link", name="Delete").click()
    expect(page.locator("#question")).to_contain_text("Delete the user nacos?")
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#error")).to_have_text("cannot delete admin: nacos")
    _row(page, "users", username).get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"user {username} deleted")
    expect(_row(page, "users", username)).to_have_count(0)


def test_roles_bind_refuse_admin_unbind(admin, console_node):
    page = admin
    username, role = _name("roled"), _name("ROLE_DEV_")
    console_node.create_user(username, "roled-pass-1", grants=())
    page.goto("/nacos/console/roles")
    # The user autocomplete offers the directory's names.
    expect(page.locator(f"#user-options option[value='{username}']")).to_have_count(1)

    def bind(role_name: str, user: str) -> None:
        page.get_by_label("Role", exact=True).fill(role_name)
        page.get_by_label("Username", exact=True).fill(user)
        page.get_by_role("button", name="Bind role").click()

    bind(role, username)
    expect(page.get_by_role("status")).to_have_text(f"role bound to {username}")
    expect(page.locator(f"#roles tr[data-role='{role}'][data-user='{username}']")).to_be_visible()
    bind("ROLE_ADMIN", username)
    expect(page.locator("#error")).to_have_text("role 'ROLE_ADMIN' is not permitted to create!")
    bind("R" * 100, username)
    expect(page.locator("#error")).to_contain_text("role must be 1-64 characters")
    bind(role, "nobody-" + username)
    expect(page.locator("#error")).to_have_text(f"user 'nobody-{username}' not found!")
    shot(page, "roles")

    # The last admin binding cannot be removed.
    page.locator("#roles tr[data-role='ROLE_ADMIN'][data-user='nacos']").get_by_role(
        "link", name="Unbind"
    ).click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#error")).to_have_text("the last ROLE_ADMIN binding cannot be removed")

    page.locator(f"#roles tr[data-role='{role}']").get_by_role("link", name="Unbind").click()
    expect(page.locator("#question")).to_contain_text("last binding")
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_have_text(f"role binding of {username} removed")
    expect(page.locator(f"#roles tr[data-role='{role}']")).to_have_count(0)


def test_permissions_grant_read_only_and_are_enforced(page, console_node):
    namespace, service = _name("adm-ns-"), _name("svc-")
    reader, password, role = _name("reader"), "reader-pass-1", _name("ROLE_READ_")
    created = console_node.api(
        "POST", "/service", {"serviceName": service, "namespaceId": namespace}
    )
    assert created.status == 200, created.text
    console_node.create_user(reader, password, grants=())
    bound = console_node.admin_call("POST", "/roles", {"role": role, "username": reader})
    assert bound.status == 200, bound.text

    login(page, console_node)
    page.goto("/nacos/console/permissions")
    form = page.locator("form[action='/nacos/console/permissions/add']")

    def add(namespace_id: str, group: str, action: str) -> None:
        form.get_by_label("Role").fill(role)
        form.get_by_label("Namespace").select_option(namespace_id)
        form.get_by_label("Group (optional)").fill(group)
        form.get_by_label("Action").select_option(action)
        form.get_by_role("button", name="Add permission").click()

    expect(page.locator("#grant-help")).to_contain_text("does not allow listing")
    add(namespace, "", "r")
    expect(page.get_by_role("status")).to_have_text(f"permission added to {role}")
    row = page.locator(f"#permissions tr[data-role='{role}']")
    expect(row).to_contain_text(f"{namespace} ({namespace})")
    expect(row).to_contain_text("read only (r)")
    add(namespace, "", "r")
    expect(page.locator("#error")).to_contain_text("duplicate permission")
    add(namespace, "bad group!", "r")
    expect(page.locator("#error")).to_contain_text("malformed group 'bad group!'")
    add("public", "GROUP_B", "rw")
    scoped = page.locator(f"#permissions tr[data-role='{role}']", has_text="GROUP_B")
    expect(scoped).to_contain_text("read and write (rw)")
    expect(scoped).to_contain_text("not the namespace's service list")
    expect(page.locator(f"#permissions tr[data-role='{role}']")).to_have_count(2)
    shot(page, "permissions")
    scoped.get_by_role("link", name="Delete").click()
    expect(page.locator("#question")).to_contain_text("read and write (rw)")
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator(f"#permissions tr[data-role='{role}']")).to_have_count(1)

    # The reader sees the namespace's services, and a delete is a visible refusal.
    page.get_by_role("button", name="Log out").click()
    console_node._token = None  # the logout revoked the harness's admin token too
    login(page, console_node, reader, password)
    page.goto(f"/nacos/console/services?namespace={namespace}&hideEmpty=0")
    expect(page.locator("#services")).to_contain_text(service)
    response = page.goto(
        f"/nacos/console/service/delete?namespace={namespace}&group=DEFAULT_GROUP&name={service}"
    )
    assert response is not None and response.status == 403
    expect(page.get_by_role("alert")).to_have_text("authorization failed!")
    listed = console_node.api(
        "GET", "/service/list", {"namespaceId": namespace, "pageNo": 1, "pageSize": 100}
    )
    assert service in listed.text  # nothing was deleted


def test_own_password_change_keeps_the_session(page, console_node):
    username, old, new = _name("changer"), "changer-old-1", "changer-new-2"
    console_node.create_user(username, old)
    earlier = console_node.request(
        "POST", "/nacos/v1/auth/login", {"username": username, "password": old}
    ).json()["accessToken"]
    login(page, console_node, username, old)
    page.get_by_role("link", name="Change password").click()

    def change(current: str, password: str, repeat: str) -> None:
        page.get_by_label("Current password").fill(current)
        page.get_by_label("New password", exact=True).fill(password)
        page.get_by_label("Repeat new password").fill(repeat)
        page.get_by_role("button", name="Change password").click()

    change("not-the-password", new, new)
    expect(page.locator("#error")).to_have_text("the current password is not correct")
    change(old, new, new + "x")
    expect(page.locator("#error")).to_have_text("the two passwords do not match")
    change(old, "short", "short")
    expect(page.locator("#error")).to_contain_text("at least 8 characters")
    change(old, new, new)
    expect(page.get_by_role("status")).to_contain_text("your password was changed")
    # The session continues with a fresh token; the earlier token and the old password do not.
    page.goto("/nacos/console/services")
    expect(page.locator("#current-user")).to_have_text(username)
    assert _api_login(console_node, username, old) == 403
    assert _api_login(console_node, username, new) == 200
    stale = console_node.request("GET", "/nacos/v1/ns/service/list", {"accessToken": earlier})
    assert stale.status == 403


def test_cluster_page_lists_the_member_up(admin, console_node):
    page = admin
    page.goto("/nacos/console/cluster")
    row = page.locator(f"#members tr[data-address='{console_node.address}']")
    expect(row.locator(".tag")).to_have_text("UP")
    expect(row.locator(".tag")).to_have_class(re.compile(r"tag-up"))
    expect(row).to_contain_text("this member")
    shot(page, "cluster")
    page.get_by_label("Address starts with (ip:port)").fill("10.255.")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#members")).to_contain_text("No member whose address starts with")
    page.get_by_label("Address starts with (ip:port)").fill(console_node.address[:6])
    page.get_by_role("button", name="Search").click()
    expect(row).to_be_visible()


def test_audit_page_shows_console_writes(admin, console_node):
    page = admin
    username = _name("audited")
    page.goto("/nacos/console/users")
    form = page.locator("form[action='/nacos/console/users/create']")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password", exact=True).fill("audited-pass-1")
    form.get_by_label("Repeat password").fill("audited-pass-1")
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_have_text(f"user {username} created")

    page.goto("/nacos/console/audit?kind=user&user=nacos")
    row = page.locator("#audit tbody tr", has_text=username)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("console")
    expect(row).to_contain_text("nacos")
    expect(row).not_to_contain_text("pbkdf2")
    expect(page.locator("#members-answered")).to_contain_text(console_node.address)
    page.get_by_label("Object contains").fill(username)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(rf"object={username}"))
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    shot(page, "audit")
    response = page.goto("/nacos/console/audit?since=yesterday")
    assert response is not None and response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("since must be a date and time")
