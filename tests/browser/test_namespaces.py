"""The namespace page: CRUD, the guard while services remain, implicit namespaces, bad input,
escaping, and what a non-admin sees."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from testkit.harness import NodeProcess

from .conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

SCRIPT = "<script>alert(1)</script>"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def ns_row(page, namespace_id: str):
    return page.locator(f'#namespaces tr[data-namespace="{namespace_id}"]')


def create(page, namespace_id: str, name: str, description: str = "") -> None:
    page.goto("/nacos/console/namespaces")
    page.get_by_role("link", name="Create namespace").click()
    page.get_by_label(re.compile("^Namespace ID")).fill(namespace_id)
    page.get_by_label("Namespace name").fill(name)
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Create").click()


def test_namespace_crud_with_the_guard_and_escaping(admin, console_node: NodeProcess):
    page = admin
    namespace_id = "team-" + secrets.token_hex(3)
    create(page, namespace_id, "Team " + SCRIPT, "their services")
    expect(page.get_by_role("status")).to_contain_text(f"({namespace_id}) created")
    row = ns_row(page, namespace_id)
    expect(row.locator(".ns-name")).to_have_text("Team " + SCRIPT)
    expect(row.locator(".ns-kind")).to_have_text("custom")
    expect(ns_row(page, "public").get_by_role("link", name="Edit")).to_have_count(0)
    expect(ns_row(page, "public").get_by_role("link", name="Delete")).to_have_count(0)
    assert page.dialogs == []

    # The switcher offers it, and a copied link opens the same namespace with its name shown.
    page.goto("/nacos/console/services?namespace=public")
    page.locator(".switcher").get_by_role("link", name="Team " + SCRIPT).click()
    expect(page).to_have_url(re.compile(f"namespace={namespace_id}"))
    expect(page.locator("#current-namespace")).to_have_text("Team " + SCRIPT)
    assert page.dialogs == []

    # Edit name and description; the id stays.
    page.goto("/nacos/console/namespaces")
    ns_row(page, namespace_id).get_by_role("link", name="Edit").click()
    expect(page.get_by_label(re.compile("^Namespace ID"))).to_have_attribute("readonly", "")
    page.get_by_label("Namespace name").fill("Team B")
    page.get_by_label("Description").fill("renamed")
    page.get_by_role("button", name="Save").click()
    expect(ns_row(page, namespace_id).locator(".ns-name")).to_have_text("Team B")
    expect(ns_row(page, namespace_id).locator(".ns-desc")).to_have_text("renamed")
    shot(page, "namespaces")

    # Delete is refused while a service remains, with the count; then it goes through.
    registered = console_node.api(
        "POST", "/service", {"serviceName": "held", "namespaceId": namespace_id}
    )
    assert registered.status == 200, registered.text
    page.goto("/nacos/console/namespaces")
    expect(ns_row(page, namespace_id).locator(".ns-services")).to_have_text("1")
    ns_row(page, namespace_id).get_by_role("link", name="Delete").click()
    expect(page.locator("#question")).to_contain_text("still holds 1 service")
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#error")).to_contain_text("still holds 1 service")
    deleted = console_node.api(
        "DELETE", "/service", {"serviceName": "held", "namespaceId": namespace_id}
    )
    assert deleted.status == 200, deleted.text
    page.goto("/nacos/console/namespaces")
    ns_row(page, namespace_id).get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"({namespace_id}) deleted")
    expect(ns_row(page, namespace_id)).to_have_count(0)


def test_a_blank_id_is_generated(admin):
    page = admin
    create(page, "", "generated-" + secrets.token_hex(3))
    expect(page.get_by_role("status")).to_have_text(re.compile(rf"\({UUID}\) created"))


BAD_NAMESPACES = [
    ("bad id!", "x", "namespaceId format is incorrect"),
    ("x" * 129, "x", "namespaceId length greater than 128"),
    ("public", "x", "reserved"),
    ("fine-id", "", "namespaceName is required"),
    ("fine-id", "a@b", "namespaceName must not contain @"),
]


def test_bad_namespace_input_is_shown_and_stores_nothing(admin):
    page = admin
    page.goto("/nacos/console/namespace/create")
    for namespace_id, name, message in BAD_NAMESPACES:
        # The form re-renders with the message: each case is submitted from there.
        page.get_by_label(re.compile("^Namespace ID")).fill(namespace_id)
        page.get_by_label("Namespace name").evaluate("e => e.removeAttribute('required')")
        page.get_by_label("Namespace name").fill(name)
        with page.expect_response(re.compile(r"/namespace/create")) as answer:
            page.get_by_role("button", name="Create").click()
        assert answer.value.status == 400, namespace_id
        expect(page.locator("#error")).to_contain_text(message)
    page.goto("/nacos/console/namespaces")
    expect(ns_row(page, "public")).to_be_visible()
    expect(ns_row(page, "fine-id")).to_have_count(0)


def test_a_duplicate_id_is_refused(admin):
    page = admin
    namespace_id = "dup-" + secrets.token_hex(3)
    create(page, namespace_id, "first")
    expect(page.get_by_role("status")).to_contain_text("created")
    create(page, namespace_id, "second")
    expect(page.locator("#error")).to_have_text("namespaceId already exist")
    page.goto("/nacos/console/namespaces")
    expect(ns_row(page, namespace_id).locator(".ns-name")).to_have_text("first")


def test_an_implicit_namespace_is_listed_and_can_be_registered(admin, console_node):
    page = admin
    namespace_id = "implicit-" + secrets.token_hex(3)
    registered = console_node.api(
        "POST",
        "/instance",
        {"serviceName": "s", "ip": "10.1.1.1", "port": 80, "namespaceId": namespace_id},
    )
    assert registered.status == 200, registered.text
    page.goto("/nacos/console/namespaces")
    expect(ns_row(page, namespace_id).locator(".ns-kind")).to_have_text("implicit")
    ns_row(page, namespace_id).get_by_role("link", name="Register").click()
    expect(page.get_by_label(re.compile("^Namespace ID"))).to_have_value(namespace_id)
    page.get_by_label("Namespace name").fill("Adopted")
    page.get_by_role("button", name="Create").click()
    expect(ns_row(page, namespace_id).locator(".ns-kind")).to_have_text("custom")
    expect(ns_row(page, namespace_id).locator(".ns-name")).to_have_text("Adopted")


def test_a_reader_sees_only_its_namespaces_and_no_write_actions(page, console_node):
    namespace_id = "readonly-" + secrets.token_hex(3)
    username = "reader" + secrets.token_hex(3)
    console_node.create_user(username, "reader-password-1", grants=((f"{namespace_id}:*:*", "r"),))
    registered = console_node.api(
        "POST", "/service", {"serviceName": "visible", "namespaceId": namespace_id}
    )
    assert registered.status == 200, registered.text
    login(page, console_node, username=username, password="reader-password-1")
    page.goto("/nacos/console/namespaces")
    expect(page.locator("#namespaces tbody tr")).to_have_count(1)
    expect(ns_row(page, namespace_id)).to_be_visible()
    expect(page.get_by_role("link", name="Create namespace")).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    assert page.goto("/nacos/console/namespace/create").status == 403
    expect(page.locator("#error")).to_have_text("authorization failed!")
    assert page.goto("/nacos/console/services?namespace=public").status == 403
    page.goto(f"/nacos/console/services?namespace={namespace_id}&hideEmpty=0")
    expect(page.locator("#services")).to_contain_text("visible")
    expect(page.get_by_role("link", name="Create service")).to_have_count(0)
    expect(page.locator(".switcher a")).to_have_count(1)
    page.get_by_role("link", name="Details").click()
    expect(page.get_by_role("link", name="Edit service")).to_have_count(0)
