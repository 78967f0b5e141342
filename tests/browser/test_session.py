"""Login, logout, redirects, CSRF and the security headers of the console."""

from __future__ import annotations

import re
import urllib.parse

import pytest
import requests
from playwright.sync_api import expect

from testkit.harness import NodeProcess

from .conftest import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_page_without_a_session_redirects_to_login_and_back(page, console_node: NodeProcess):
    page.goto("/nacos/console/services?namespace=public&name=x")
    expect(page).to_have_url(re.compile(r"/nacos/console/login\?next="))
    shot(page, "login")
    login(page, console_node, navigate=False)
    expect(page).to_have_url(re.compile(r"/nacos/console/services\?namespace=public&name=x$"))
    expect(page.locator("#current-user")).to_have_text("nacos")


def test_the_entry_point_opens_the_console(page, console_node: NodeProcess):
    page.goto("/nacos")
    expect(page).to_have_url(re.compile(r"/nacos/console/login"))
    page.goto("/nacos/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_wrong_password_stays_on_login_with_a_message(page, console_node: NodeProcess):
    login(page, console_node, password="wrong-password")
    expect(page.locator("#error")).to_have_text("invalid username or password")
    expect(page).to_have_url(re.compile(r"/nacos/console/login"))
    # The right one works, by keyboard alone, and reloading keeps the session.
    page.get_by_label("Username").clear()  # the form kept the name it was sent
    page.get_by_label("Username").focus()
    page.keyboard.type("nacos")
    page.keyboard.press("Tab")
    page.keyboard.type(console_node.admin_password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/nacos/console/services"))
    page.reload()
    expect(page.locator("#current-user")).to_have_text("nacos")


def test_repeated_failures_show_the_throttle_message(page, console_node: NodeProcess):
    for _ in range(2):  # the node's NAMING_LOGIN_MAX_FAILURES (conftest)
        login(page, console_node, username="nobody-here", password="wrong-password")
        expect(page.locator("#error")).to_have_text("invalid username or password")
    login(page, console_node, username="nobody-here", password="wrong-password")
    expect(page.locator("#error")).to_contain_text("too many failed logins")
    expect(page.locator("#error")).to_contain_text("try again in")


def test_logout_then_back_shows_no_data(admin, console_node: NodeProcess):
    page = admin
    page.goto("/nacos/console/services?hideEmpty=0")
    expect(page.locator("#services")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    console_node._token = None  # the logout revoked the harness's cached admin token too
    expect(page).to_have_url(re.compile(r"/nacos/console/login\?out=1"))
    expect(page.get_by_role("status")).to_have_text("you are logged out")
    console_node._token = None  # the logout revoked the harness's cached admin token too
    page.go_back()
    # no-store: the browser asks again, and without a session it gets the login page.
    expect(page).to_have_url(re.compile(r"/nacos/console/login"))
    expect(page.locator("#services")).to_have_count(0)


def test_a_revoked_token_ends_the_session_with_a_visible_message(admin, console_node):
    page = admin
    service = "revoked-" + console_node.admin_password[-6:]
    assert console_node.api("POST", "/service", {"serviceName": service}).status == 200
    page.goto(f"/nacos/console/service?namespace=public&name={service}")
    expect(page.locator("#service-name")).to_have_text(service)
    # A logout through the API revokes every token of the user, the console's included.
    token = console_node.request(
        "POST",
        "/nacos/v1/auth/login",
        {"username": "nacos", "password": console_node.admin_password},
    ).json()["accessToken"]
    logout = console_node.request("POST", "/nacos/v1/auth/logout", {"accessToken": token})
    assert logout.status == 200
    # The page's own refresh (htmx, every 2 s) finds the session over and leaves for the
    # login page: no click needed.
    expect(page).to_have_url(re.compile(r"/nacos/console/login\?.*expired=1"), timeout=15000)
    assert "next=%2Fnacos%2Fconsole%2Fservice%3F" in page.url  # back to the page, not a part
    expect(page.get_by_role("status")).to_have_text("session expired, please log in again")
    console_node._token = None  # the harness's cached token was revoked too


def test_security_headers_on_every_console_response(admin, console_node: NodeProcess):
    response = admin.goto("/nacos/console/services")
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-frame-options"] == "DENY"
    assert "no-store" in headers["cache-control"]
    cookie = next(c for c in admin.context.cookies() if c["name"] == "nacos_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    # The API's hot paths carry none of it.
    api = console_node.api("GET", "/instance/list", {"serviceName": "none"})
    assert "Content-Security-Policy" not in api.headers
    assert "Set-Cookie" not in api.headers


def test_a_cross_site_post_is_refused(admin, console_node: NodeProcess):
    """A forged form post carries the victim's cookie but not the page's CSRF token."""
    cookie = next(c for c in admin.context.cookies() if c["name"] == "nacos_session")
    session = requests.Session()
    session.cookies.set("nacos_session", cookie["value"], path="/nacos/")
    target = console_node.base + "/nacos/console/service/create"
    form = {"namespace": "public", "name": "forged", "protectThreshold": "0"}
    refused = session.post(target, data=form, headers={"Origin": "http://evil.example"}, timeout=10)
    assert refused.status_code == 403
    no_token = session.post(target, data=form, headers={"Referer": target}, timeout=10)
    assert no_token.status_code == 403
    listed = console_node.api("GET", "/service", {"serviceName": "forged"})
    assert listed.status == 404
    # The page itself still posts fine (its token rides in the form).
    admin.goto("/nacos/console/service/create?" + urllib.parse.urlencode({"namespace": "public"}))
    admin.get_by_label("Service name").fill("csrf-ok")
    admin.get_by_role("button", name="Create").click()
    expect(admin.locator("#service-name")).to_have_text("csrf-ok")


def test_read_only_pages_work_without_javascript(admin, browser, console_node: NodeProcess):
    service = "nojs-" + console_node.admin_password[-6:]
    assert console_node.api("POST", "/service", {"serviceName": service}).status == 200
    context = browser.new_context(base_url=console_node.base, java_script_enabled=False)
    try:
        context.add_cookies(admin.context.cookies())
        page = context.new_page()
        page.goto("/nacos/console/services?namespace=public")
        page.get_by_label("Service name").fill(service)
        page.get_by_label("Hide empty services").uncheck()
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#services tbody tr")).to_have_count(1)
        page.get_by_role("link", name="Details").click()
        expect(page.locator("#service-name")).to_have_text(service)
        page.goto("/nacos/console/namespaces")
        expect(page.locator("#namespaces")).to_contain_text("public")
    finally:
        context.close()
