"""One registry (issue #14): what Eureka and airlift clients register is in the console like
any other service, and the Eureka-only fields are visible on its page."""

from __future__ import annotations

from django.test import Client

from facades.airlift import context as airlift
from facades.airlift.context import AirliftSettings
from node.runtime import NodeRuntime
from tests.unit.test_airlift import ENV, announcement, put
from tests.unit.test_eureka import APP, register


def test_eureka_apps_and_airlift_services_are_in_the_console(node: NodeRuntime) -> None:
    airlift.install(node, AirliftSettings(environment=ENV, max_age_s=30))
    client = Client()
    assert register(client).status_code == 204
    service = {
        "id": "7ab9b8c0-0000-4000-8000-0000000000a1",
        "type": "presto",
        "properties": {"http": "http://10.0.0.8:8080"},
    }
    assert put(client, "node-1", announcement("general", "/rack1", service)).status_code == 202

    listing = client.get("/nacos/console/services").content.decode()
    assert APP in listing and "DEFAULT_GROUP" in listing
    assert "presto" in listing and "general" in listing

    page = client.get(
        "/nacos/console/service", {"namespace": "public", "group": "DEFAULT_GROUP", "name": APP}
    ).content.decode()
    assert "10.0.0.5" in page and "preserved.source" in page and "eureka" in page
    page = client.get(
        "/nacos/console/service", {"namespace": "public", "group": "general", "name": "presto"}
    ).content.decode()
    assert "10.0.0.8" in page and "airlift.nodeId" in page
