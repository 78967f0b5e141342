"""The console's extras in a real browser: bulk actions on selected instances, the service
search by instance, and the first-run administrator page (on a node of its own, started with
``NAMING_ADMIN_BOOTSTRAP=false``). Every change is checked through the v1 API as a client sees
it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from testkit.harness import NodeProcess, running_node

from .conftest import TIMEOUT_MS, login

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def fresh(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def hosts(node: NodeProcess, service: str) -> dict[str, dict[str, Any]]:
    listed = node.api("GET", "/instance/list", {"serviceName": service})
    assert listed.status == 200, listed.text
    return {f"{h['ip']}:{h['port']}": h for h in listed.json()["hosts"]}


def register(node: NodeProcess, service: str, ip: str, port: int, **extra: str) -> None:
    """Through the v1 API as a client would (the SDK's fixture logs in with a 3 s timeout,
    which a loaded machine can outlast)."""
    answer = node.api(
        "POST",
        "/instance",
        {"serviceName": service, "ip": ip, "port": port, "clusterName": "DEFAULT", **extra},
    )
    assert answer.status == 200, answer.text


def test_bulk_offline_online_and_metadata(admin, console_node: NodeProcess):
    page = admin
    service = fresh("bulk")
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    for ip in ips:
        # Persistent: the test may outlast an unbeaten ephemeral instance's 30 s.
        register(console_node, service, ip, 8080, metadata="keep=1", ephemeral="false")
    page.goto(f"/nacos/console/service?namespace=public&group=DEFAULT_GROUP&name={service}")

    # Nothing selected: a visible message, nothing changes.
    page.get_by_role("button", name="Offline selected").click()
    expect(page.get_by_role("alert")).to_contain_text("select at least one instance first")
    assert len(hosts(console_node, service)) == 3

    page.get_by_label("select 10.0.0.1:8080").check()
    page.get_by_label("select 10.0.0.2:8080").check()
    page.wait_for_timeout(2500)  # a refresh of the tables keeps the selection
    expect(page.get_by_label("select 10.0.0.2:8080")).to_be_checked()
    page.get_by_role("button", name="Offline selected").click()
    expect(page.get_by_role("status")).to_have_text("2 instances set offline")
    assert sorted(hosts(console_node, service)) == ["10.0.0.3:8080"]

    # The cluster's box selects every row (script), and means the whole cluster (server).
    page.get_by_label("select all in cluster DEFAULT").check()
    expect(page.get_by_label("select 10.0.0.1:8080")).to_be_checked()
    page.get_by_role("button", name="Online selected").click()
    expect(page.get_by_role("status")).to_have_text("3 instances set online")
    assert len(hosts(console_node, service)) == 3

    page.get_by_label("select 10.0.0.3:8080").check()
    page.get_by_label("Metadata (one key=value per line").fill("zone=eu-1\nversion=2")
    page.get_by_role("button", name="Set metadata on selected").click()
    expect(page.get_by_role("status")).to_have_text("metadata set on 1 instance")
    listed = hosts(console_node, service)
    assert listed["10.0.0.3:8080"]["metadata"] == {"keep": "1", "zone": "eu-1", "version": "2"}
    assert listed["10.0.0.1:8080"]["metadata"] == {"keep": "1"}

    # A malformed line: a message, the text and the selection kept, nothing changes.
    page.get_by_label("select 10.0.0.1:8080").check()
    page.get_by_label("Metadata (one key=value per line").fill("zone")
    page.get_by_role("button", name="Set metadata on selected").click()
    expect(page.get_by_role("alert")).to_contain_text("line 1: expected key=value")
    expect(page.get_by_label("select 10.0.0.1:8080")).to_be_checked()
    assert hosts(console_node, service) == listed
    assert page.csp_violations == []


def test_service_search_by_instance_ip(admin, console_node: NodeProcess):
    page = admin
    holder, other = fresh("holder"), fresh("other")
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    register(console_node, holder, ip, 9001, ephemeral="false")
    register(console_node, other, "10.255.255.1", 9001, ephemeral="false")
    page.goto("/nacos/console/services?namespace=public")
    page.get_by_label("Instance (ip or ip:port)").fill(f"{ip}:9001")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"instance=" + re.escape(f"{ip}%3A9001")))
    table = page.locator("#services")
    expect(table.get_by_role("cell", name=holder, exact=True)).to_be_visible()
    expect(table.get_by_role("cell", name=other, exact=True)).to_have_count(0)
    expect(page.locator("#total")).to_have_text("Total: 1")


@pytest.fixture(scope="module")
def bare_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Auth on and nobody is admin: the first-run page's node."""
    with running_node(
        Path(tmp_path_factory.mktemp("bare-node")),
        {"NAMING_ADMIN_BOOTSTRAP": "false", "NAMING_LOGIN_HASH_NICE": "0"},
    ) as node:
        yield node


def test_first_run_admin_page(browser, bare_node: NodeProcess):
    context = browser.new_context(base_url=bare_node.base)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/nacos/")
        expect(page).to_have_url(re.compile(r"/nacos/console/init$"))
        page.goto("/nacos/console/login")
        expect(page).to_have_url(re.compile(r"/nacos/console/init$"))

        page.get_by_label("Password", exact=True).fill("first-admin-pw")
        page.get_by_label("Repeat password").fill("other-text-pw")
        page.get_by_role("button", name="Set up the administrator").click()
        expect(page.get_by_role("alert")).to_have_text("the two passwords do not match")

        page.get_by_label("Password", exact=True).fill("first-admin-pw")
        page.get_by_label("Repeat password").fill("first-admin-pw")
        page.get_by_role("button", name="Set up the administrator").click()
        expect(page.locator("#init-done")).to_contain_text("nacos")
        page.get_by_role("link", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/nacos/console/login"))
        bare_node.admin_password = "first-admin-pw"
        login(page, bare_node, navigate=False)
        expect(page).to_have_url(re.compile(r"/nacos/console/services"))

        # Gone for good, whoever asks.
        gone = page.goto("/nacos/console/init")
        assert gone is not None and gone.status == 404
        refused = bare_node.request(
            "POST", "/nacos/v1/auth/users/admin", {"password": "another-password"}
        )
        assert '"code":409' in refused.text.replace(" ", ""), refused.text
    finally:
        context.close()
