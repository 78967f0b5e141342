"""The console edge in-process (no sockets, auth off): wrappers, escaping, CSRF, errors."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from lib.keys import peer_key, session_key, token_key

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def token_of(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def post_form(browser: Client, page: str, form: dict[str, str], action: str | None = None):
    token = token_of(browser.get(page).content.decode())
    return browser.post(action or page, {**form, "csrfmiddlewaretoken": token})


def test_auth_off_opens_the_console_without_a_login(node, browser):
    assert browser.get("/nacos/").headers["Location"] == "/nacos/console/services"
    page = browser.get("/nacos/console/services")
    assert page.status_code == 200
    assert b"Authentication is off" in page.content
    assert browser.get("/nacos/console/login").headers["Location"] == "/nacos/console/services"


def test_every_console_response_carries_the_security_headers(node, browser):
    page = browser.get("/nacos/console/services")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in page.headers["Cache-Control"]
    # An error page too.
    bad = browser.get("/nacos/console/services?namespace=bad%20id")
    assert bad.status_code == 400
    assert "Content-Security-Policy" in bad.headers


def test_the_api_pays_nothing_for_the_console(node, browser):
    listed = browser.get("/nacos/v1/ns/instance/list?serviceName=s")
    assert listed.status_code == 200
    assert "Content-Security-Policy" not in listed.headers
    assert "Set-Cookie" not in listed.headers
    assert not listed.cookies


def test_a_post_without_the_csrf_token_is_refused_and_stores_nothing(node, browser):
    refused = browser.post(
        "/nacos/console/service/create", {"name": "forged", "protectThreshold": "0"}
    )
    assert refused.status_code == 403
    assert "Content-Security-Policy" in refused.headers
    assert node.registry.service_count == 0


def test_created_service_text_is_escaped(node, browser):
    created = post_form(
        browser,
        "/nacos/console/service/create?namespace=public",
        {"name": "shop", "protectThreshold": "0.5", "metadata": json.dumps({"k": SCRIPT})},
    )
    assert created.status_code == 302
    page = browser.get(created.headers["Location"]).content.decode()
    assert SCRIPT not in page
    assert "k=&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "a", "protectThreshold": "2"}, "protectThreshold must be between 0 and 1"),
        ({"name": "a", "protectThreshold": "x"}, "For input string"),
        ({"name": "a", "protectThreshold": "0", "metadata": "{"}, "metadata is not valid JSON"),
        ({"name": "a", "protectThreshold": "0", "metadata": "k=v"}, "metadata is not valid"),
        ({"name": "", "protectThreshold": "0"}, "Param &#x27;name&#x27; is required"),
        ({"name": "a", "protectThreshold": "0", "selectorType": "label"}, "needs an expression"),
        ({"name": "a", "protectThreshold": "0", "selectorType": "sql"}, "none or label"),
    ],
)
def test_bad_service_input_is_a_visible_400(node, browser, form, message):
    answer = post_form(browser, "/nacos/console/service/create", form)
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert node.registry.service_count == 0


def test_errors_of_the_core_are_pages_with_their_status(node, browser):
    missing = browser.get("/nacos/console/service?name=nope")
    assert missing.status_code == 404
    assert b'role="alert"' in missing.content
    assert browser.get("/nacos/console/service").status_code == 400
    assert browser.post("/nacos/console/services").status_code in (403, 405)


def test_hide_empty_is_remembered_in_a_cookie(node, browser):
    shown = browser.get("/nacos/console/services?hideEmpty=0")
    assert shown.cookies["nacos_hide_empty"].value == "0"
    later = browser.get("/nacos/console/services")
    assert b'name="hideEmpty" value="1" checked' not in later.content


def test_only_the_console_static_files_are_served(node, browser):
    assert browser.get("/nacos/console/static/console/console.js").status_code == 200
    htmx = browser.get("/nacos/console/static/django_htmx/htmx-2.min.js")
    assert htmx.status_code == 200 and htmx.headers["Content-Type"] == "text/javascript"
    for path in ("rest_framework/js/default.js", "console/../../settings.py", "admin/x"):
        assert browser.get("/nacos/console/static/" + path).status_code == 404


def test_pages_have_no_inline_script_or_style(node, browser):
    html = browser.get("/nacos/console/services").content.decode()
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html


def test_the_session_key_is_derived_per_cluster_and_distinct():
    assert session_key("s") == session_key("s")
    assert session_key("s") != session_key("t")
    derived = {bytes.fromhex(session_key("s")), token_key("s"), peer_key("s")}
    assert len(derived) == 3
