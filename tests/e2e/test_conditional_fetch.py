"""Conditional fetch against a real node (issue #13, item 2): the list is answered on the event
loop of the asyncio server, so the 304 and its headers are checked through that path, with a
real HTTP client on a kept-alive connection."""

from __future__ import annotations

import requests

from testkit.harness import NodeProcess


def test_a_kept_alive_client_gets_304_then_the_new_list(node: NodeProcess, svc: str) -> None:
    token = node.token()
    url = f"{node.base}/nacos/v1/ns/instance/list"
    query = {"serviceName": svc, "accessToken": token}
    register = {"serviceName": svc, "port": 80, "accessToken": token}
    assert node.api("POST", "/instance", {**register, "ip": "10.9.0.1"}).status == 200
    with requests.Session() as http:
        first = http.get(url, params=query, timeout=10)
        tag = first.headers["ETag"]
        assert first.status_code == 200 and tag.startswith('W/"')
        for _ in range(3):  # the same connection, answered without a body each time
            again = http.get(url, params=query, headers={"If-None-Match": tag}, timeout=10)
            assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", tag)
        assert node.api("POST", "/instance", {**register, "ip": "10.9.0.2"}).status == 200
        changed = http.get(url, params=query, headers={"If-None-Match": tag}, timeout=10)
        assert changed.status_code == 200 and changed.headers["ETag"] != tag
        assert sorted(h["ip"] for h in changed.json()["hosts"]) == ["10.9.0.1", "10.9.0.2"]
