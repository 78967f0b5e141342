"""The naming pages against a real node: services, detail, clusters, instances, subscribers.

Services are registered by the real Python SDK (``nacos.NacosClient``) or the v1 API, and
every change made in the browser is checked through ``GET /nacos/v1/ns/...`` as a client sees
it. Ephemeral instances are registered without heartbeats: each test finishes well inside the
15 s after which the node would mark them unhealthy.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse

import pytest
from playwright.sync_api import expect

from testkit.harness import NodeProcess, wait_for

from .conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

SCRIPT = "<script>alert(1)</script>"
NODE_UA = {"User-Agent": "Nacos-Java-Client:v1.0.0", "Client-Version": "Nacos-Java-Client:v1.0.0"}


def fresh(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def detail(service: str, namespace: str = "public") -> str:
    query = {"namespace": namespace, "group": "DEFAULT_GROUP", "name": service}
    return "/nacos/console/service?" + urllib.parse.urlencode(query)


def row(page, ip: str, port: int):
    return page.locator(f'tr[data-instance="{ip}:{port}"]')


def hosts(node: NodeProcess, service: str) -> list[dict]:
    listed = node.api("GET", "/instance/list", {"serviceName": service})
    assert listed.status == 200, listed.text
    return listed.json()["hosts"]


def test_a_service_registered_by_the_sdk_shows_on_the_list_and_detail_pages(
    admin, console_node: NodeProcess, sdk
):
    page = admin
    service = fresh("orders")
    client = sdk
    metadata = {"version": "2", "note": SCRIPT}
    assert client.add_naming_instance(
        service, "10.0.0.7", 8080, cluster_name="DEFAULT", metadata=metadata
    )
    page.goto("/nacos/console/services?namespace=public&name=" + service)
    table = page.locator("#services")
    expect(table.get_by_role("cell", name=service, exact=True)).to_be_visible()
    expect(table.locator("tbody tr").first).to_contain_text("DEFAULT_GROUP")
    shot(page, "services")

    page.get_by_role("link", name="Details").first.click()
    expect(page).to_have_url(re.compile(r"/nacos/console/service\?"))
    expect(page.locator("#service-name")).to_have_text(service)
    instance = row(page, "10.0.0.7", 8080)
    expect(instance).to_be_visible()
    expect(instance.locator(".weight")).to_have_text("1.0")
    # Metadata with markup is text: shown literally, never executed.
    expect(instance.locator(".meta")).to_contain_text("note=" + SCRIPT)
    assert page.dialogs == []
    expect(instance.get_by_role("button", name="Delete")).to_be_disabled()
    shot(page, "service-detail")
    page.wait_for_timeout(2500)  # one htmx refresh of the instance tables
    expect(instance.locator(".meta")).to_contain_text("note=" + SCRIPT)
    assert page.dialogs == []
    assert page.csp_violations == []


def test_editing_a_weight_in_the_browser_is_seen_by_clients(admin, console_node: NodeProcess, sdk):
    page = admin
    service = fresh("weights")
    assert sdk.add_naming_instance(service, "10.0.0.8", 8081, cluster_name="DEFAULT")
    page.goto(detail(service))
    row(page, "10.0.0.8", 8081).get_by_role("link", name="Edit").click()
    page.get_by_label("Weight").fill("3.5")
    page.get_by_label("Metadata (JSON object)").fill('{"zone": "b"}')
    page.get_by_role("button", name="Save").click()
    expect(row(page, "10.0.0.8", 8081).locator(".weight")).to_have_text("3.5")
    [host] = hosts(console_node, service)
    assert host["weight"] == 3.5
    assert host["metadata"] == {"zone": "b"}


def test_offline_and_online_are_seen_by_the_sdk(admin, console_node: NodeProcess, sdk):
    page = admin
    service = fresh("toggle")
    client = sdk
    assert client.add_naming_instance(service, "10.0.0.9", 8082, cluster_name="DEFAULT")
    page.goto(detail(service))
    instance = row(page, "10.0.0.9", 8082)
    instance.get_by_role("button", name="Offline").click()
    expect(instance.locator(".enabled")).to_have_text("false")
    # The registry's views are rebuilt on the notifier thread: clients see it a moment later.
    wait_for(lambda: client.list_naming_instance(service)["hosts"] == [], 5, message="offline")
    instance.get_by_role("button", name="Online").click()
    expect(instance.locator(".enabled")).to_have_text("true")
    wait_for(
        lambda: [h["ip"] for h in client.list_naming_instance(service)["hosts"]] == ["10.0.0.9"],
        5,
        message="online",
    )


def test_health_changes_show_without_a_reload(admin, console_node: NodeProcess):
    page = admin
    service = fresh("health")
    base = {"serviceName": service, "clusterName": "DEFAULT"}
    # A persistent instance in a cluster without server checks, so its health is set by hand.
    created = console_node.api("POST", "/service", {"serviceName": service, "protectThreshold": 0})
    assert created.status == 200, created.text
    page.goto(detail(service))
    persisted = {**base, "ip": "127.0.0.1", "port": 9, "ephemeral": "false"}
    assert console_node.api("POST", "/instance", persisted).status == 200
    expect(row(page, "127.0.0.1", 9)).to_be_visible()  # appeared without a reload
    page.get_by_role("link", name="Edit cluster DEFAULT").click()
    page.get_by_label("Check type").select_option("NONE")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("cluster DEFAULT saved")
    expect(page.locator(".cluster dl")).to_contain_text("NONE")

    page.evaluate("window.__marker = 1")  # gone if the page reloads
    marked = console_node.api(
        "PUT", "/health", {**base, "ip": "127.0.0.1", "port": 9, "healthy": "false"}
    )
    assert marked.status == 200, marked.text
    expect(row(page, "127.0.0.1", 9)).to_have_class("unhealthy", timeout=5000)
    expect(row(page, "127.0.0.1", 9).locator(".health")).to_have_text("false")

    ephemeral = {**base, "ip": "10.0.0.10", "port": 8083}
    assert console_node.api("POST", "/instance", ephemeral).status == 200
    expect(row(page, "10.0.0.10", 8083)).to_be_visible(timeout=5000)
    assert console_node.api("DELETE", "/instance", ephemeral).status == 200
    expect(row(page, "10.0.0.10", 8083)).to_have_count(0, timeout=5000)
    assert page.evaluate("window.__marker") == 1


def test_create_edit_and_delete_a_service(admin, console_node: NodeProcess):
    page = admin
    service = fresh("created")
    page.goto("/nacos/console/services?namespace=public")
    page.get_by_role("link", name="Create service").click()
    expect(page.get_by_label("Group name")).to_have_value("DEFAULT_GROUP")
    page.get_by_label("Service name").fill(service)
    page.get_by_label("Protect threshold (0 to 1)").fill("0.3")
    page.get_by_label("Metadata (JSON object)").fill('{"owner": "team-a"}')
    page.get_by_label("Selector type").select_option("label")
    page.get_by_label("Selector expression (label selector only)").fill(
        "INSTANCE.metadata.site = SERVICE.metadata.site"
    )
    shot(page, "service-create")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#service-name")).to_have_text(service)
    expect(page.locator("#threshold")).to_have_text("0.3")
    stored = console_node.api("GET", "/service", {"serviceName": service}).json()
    assert stored["protectThreshold"] == 0.3
    assert stored["metadata"] == {"owner": "team-a"}
    assert stored["selector"]["type"] == "label"

    page.get_by_role("link", name="Edit service").click()
    expect(page.get_by_label("Service name")).to_have_attribute("readonly", "")
    page.get_by_label("Protect threshold (0 to 1)").fill("0.8")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#threshold")).to_have_text("0.8")

    # An empty service is hidden by default; the list shows it when asked.
    page.goto("/nacos/console/services?namespace=public&hideEmpty=0&name=" + service)
    listed = page.locator("#services tbody tr").first
    expect(listed).to_contain_text(service)
    expect(listed).to_have_class("no-healthy")
    listed.get_by_role("link", name="Delete").click()
    expect(page.locator("#question")).to_contain_text(service)
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_have_text(f"service {service} deleted")
    assert console_node.api("GET", "/service", {"serviceName": service}).status == 404


BAD_SERVICES = [
    ("Protect threshold (0 to 1)", "2", "protectThreshold must be between 0 and 1"),
    ("Metadata (JSON object)", '{"a": ', "metadata is not valid JSON"),
    ("Metadata (JSON object)", "[1, 2]", "metadata must be a JSON object"),
    ("Service name", SCRIPT, "dom name can only have these characters"),
]


def test_bad_input_on_the_service_form_is_shown_and_stores_nothing(
    admin, console_node: NodeProcess
):
    page = admin
    service = fresh("bad")
    page.goto("/nacos/console/service/create?namespace=public")
    for field, value, message in BAD_SERVICES:
        # The form re-renders with the message and the values: each case starts from there.
        page.get_by_label("Service name").fill(service)
        page.get_by_label("Protect threshold (0 to 1)").fill("0")
        page.get_by_label("Metadata (JSON object)").fill("")
        page.get_by_label(field).fill(value)
        with page.expect_response(re.compile(r"/service/create")) as answer:
            page.get_by_role("button", name="Create").click()
        assert answer.value.status == 400, field
        expect(page.locator("#error")).to_contain_text(message)
        expect(page.get_by_label(field)).to_have_value(value)
    assert page.dialogs == []
    assert console_node.api("GET", "/service", {"serviceName": service}).status == 404


def test_add_and_delete_a_persistent_instance(admin, console_node: NodeProcess):
    page = admin
    service = fresh("persist")
    assert console_node.api("POST", "/service", {"serviceName": service}).status == 200
    page.goto(detail(service))
    page.get_by_role("link", name="Add persistent instance").click()
    page.get_by_label("IP").fill("127.0.0.1")
    page.get_by_label("Port").fill("not-a-port")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#error")).to_be_visible()
    page.get_by_label("Port").fill("19")
    page.get_by_label("Cluster").fill("EDGE")
    page.get_by_role("button", name="Add").click()
    instance = row(page, "127.0.0.1", 19)
    expect(instance).to_contain_text("false")  # not ephemeral
    listed = console_node.api(
        "GET",
        "/instance/list",
        {"serviceName": service, "healthyOnly": "false", "clusters": "EDGE"},
    ).json()["hosts"]
    assert [(h["ip"], h["port"], h["ephemeral"]) for h in listed] == [("127.0.0.1", 19, False)]
    instance.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status")).to_have_text("127.0.0.1:19 deleted")
    wait_for(lambda: hosts(console_node, service) == [], 5, message="instance deleted")


def test_filters_and_paging_live_in_the_url(admin, console_node: NodeProcess):
    page = admin
    prefix = fresh("page")
    for n in range(12):
        created = console_node.api("POST", "/service", {"serviceName": f"{prefix}-{n:02d}"})
        assert created.status == 200
    page.goto(f"/nacos/console/services?namespace=public&hideEmpty=0&name={prefix}")
    expect(page.locator("#total")).to_have_text("Total: 12")
    expect(page.locator("#services tbody tr")).to_have_count(10)
    page.get_by_role("link", name="Next page").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#services tbody tr")).to_have_count(2)
    page.get_by_label("Page size").select_option("20")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#services tbody tr")).to_have_count(12)
    # Hide empty is remembered: the next visit without the parameter keeps it off.
    page.goto(f"/nacos/console/services?namespace=public&name={prefix}")
    expect(page.get_by_label("Hide empty services")).not_to_be_checked()
    expect(page.locator("#total")).to_have_text("Total: 12")
    page.get_by_label("Hide empty services").check()
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#total")).to_have_text("Total: 0")
    page.get_by_label("Group name").fill("NO_SUCH_GROUP")
    page.get_by_label("Hide empty services").uncheck()
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#total")).to_have_text("Total: 0")


def test_subscribers_page_lists_push_clients(admin, console_node: NodeProcess):
    page = admin
    service = fresh("subs")
    assert console_node.api("POST", "/service", {"serviceName": service}).status == 200
    subscribed = console_node.api(
        "GET",
        "/instance/list",
        {"serviceName": service, "udpPort": 40001, "clientIP": "203.0.113.9", "app": "shop"},
        headers=NODE_UA,
    )
    assert subscribed.status == 200
    page.goto("/nacos/console/subscribers?namespace=public")
    page.get_by_label("Service name").fill(service)
    page.get_by_role("button", name="Search").click()
    table = page.locator("#subscribers")
    expect(table).to_contain_text("127.0.0.1:40001")
    expect(table).to_contain_text("Nacos-Java-Client:v1.0.0")
    expect(table).to_contain_text("shop")
    shot(page, "subscribers")


def test_a_malformed_namespace_or_missing_service_is_a_message_not_a_500(admin):
    page = admin
    answer = page.goto("/nacos/console/services?namespace=bad%20id!")
    assert answer.status == 400
    expect(page.locator("#error")).to_contain_text("namespaceId can only have these characters")
    answer = page.goto(detail("no-such-service"))
    assert answer.status == 404
    expect(page.locator("#error")).to_contain_text("not found")
