"""Browser tests of the console: Debian's headless chromium driven by playwright (sync API),
against a real node process with auth on (``testkit.harness.running_node``).

One browser per session, one fresh context (cookies, storage) per test. A failing test leaves
a screenshot in ``<tmp>/browser-failures/``; :func:`shot` writes the named screenshots of the
main pages that the README shows (``docs/console/*.png``). Never ``playwright install``: it
downloads a browser, which this machine cannot; the Debian binary is launched by path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import NodeProcess, running_node

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install --no-install-recommends chromium; .ci/run does it)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def console_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node of its own: the login tests count failed logins, which must not lock anyone
    out of the node the other end-to-end tests share."""
    env = {
        # Two failures lock a (user, address) pair: the throttle test stays short (each
        # failed login costs a deliberately slow password hash).
        "NAMING_LOGIN_MAX_FAILURES": "2",
        "NAMING_LOGIN_HASH_NICE": "0",
    }
    with running_node(Path(tmp_path_factory.mktemp("console-node")), env) as node:
        yield node


@pytest.fixture(scope="session")
def sdk(console_node: NodeProcess) -> Any:
    """The real Python SDK as a user of its own with read and write on public (the session
    tests revoke the admin's tokens). It logs in once: a login is a password hash, which on a
    loaded box outlasts the SDK's default 3 s timeout."""
    import nacos

    console_node.create_user("sdk-user", "sdk-password-1")
    # Built without credentials, so that its first login (made at construction otherwise)
    # already runs with the longer timeout.
    client = nacos.NacosClient(console_node.address)
    client.set_options(default_timeout=20)
    client.username, client.password = "sdk-user", "sdk-password-1"
    client.get_access_token()
    return client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(
    browser: Any, console_node: NodeProcess, request: pytest.FixtureRequest, tmp_path_factory: Any
) -> Iterator[Any]:
    context = browser.new_context(base_url=console_node.base)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.dialogs = dialogs  # an XSS test asserts that no dialog ever fired
    # What the browser blocked under the CSP (an inline style or script somewhere).
    blocked: list[str] = []
    opened.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    opened.csp_violations = blocked
    try:
        yield opened
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            where = Path(tmp_path_factory.getbasetemp()) / "browser-failures"
            where.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]", "_", request.node.name)
            try:
                opened.screenshot(path=str(where / f"{name}.png"), full_page=True)
                print(f"screenshot of the failure: {where / name}.png")
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"no failure screenshot: {exc}")
        context.close()


def login(
    page: Any,
    node: NodeProcess,
    username: str = "nacos",
    password: str | None = None,
    navigate: bool = True,
) -> None:
    if navigate:
        page.goto("/nacos/console/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password or node.admin_password)
    page.get_by_role("button", name="Log in").click()


_admin_cookies: list[Any] = []


@pytest.fixture
def admin(page: Any, console_node: NodeProcess) -> Any:
    """A page signed in as the admin user. The session cookie of the last login is reused (a
    login through the form costs a password hash); a test that revoked it gets a new one."""
    if _admin_cookies:
        page.context.add_cookies(_admin_cookies)
        page.goto("/nacos/console/services")
        if "/login" not in page.url:
            return page
    login(page, console_node)
    page.wait_for_url(re.compile(r"/nacos/console/services"))
    _admin_cookies[:] = page.context.cookies()
    return page


def shot(page: Any, name: str) -> None:
    """A named screenshot of a main page, shown in the README's console section."""
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
