"""The console's administration pages on a 3-member cluster, through plain HTTP (the browser
tests drive one member): a user created in member 1's console signs in to member 2's console
and changes its password there, which holds on member 3; member 3's audit page shows the
creation made through member 1; every member's cluster page lists the three members UP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from testkit.harness import NodeProcess, running_cluster, wait_for

pytestmark = pytest.mark.xdist_group("console-cluster")

C = "/nacos/console/"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Console:
    """One browser-like session (cookies, CSRF token from the page) on one member."""

    def __init__(self, node: NodeProcess, username: str, password: str) -> None:
        self.node = node
        self.http = requests.Session()
        self.post(C + "login", {"username": username, "password": password}, form=C + "login")

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(self.node.base + path, params=params, timeout=10)

    def post(self, path: str, data: dict[str, str], form: str) -> requests.Response:
        page = self.get(form)
        found = CSRF.search(page.text)
        assert found is not None, page.text[:500]
        return self.http.post(
            self.node.base + path,
            data={**data, "csrfmiddlewaretoken": found.group(1)},
            timeout=30,
        )


def _login_status(node: NodeProcess, username: str, password: str) -> int:
    answer = node.request(
        "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
    )
    return answer.status


def test_console_administration_across_the_cluster(tmp_path: Path):
    with running_cluster(tmp_path) as nodes:
        first, second, third = nodes
        admin1 = Console(first, "nacos", first.admin_password)
        created = admin1.post(
            C + "users/create",
            {"username": "roamer", "password": "roamer-old-1", "repeat": "roamer-old-1"},
            form=C + "users",
        )
        assert "user roamer created" in created.text

        # The user made on member 1 signs in to member 2's console and changes its password.
        roamer = wait_for(
            lambda: (
                _login_status(second, "roamer", "roamer-old-1") == 200
                and Console(second, "roamer", "roamer-old-1")
            ),
            15.0,
            message="roamer known on member 2",
        )
        changed = roamer.post(
            C + "password",
            {"current": "roamer-old-1", "password": "roamer-new-2", "repeat": "roamer-new-2"},
            form=C + "password",
        )
        assert "your password was changed" in changed.text
        assert 'id="current-user">roamer<' in roamer.get(C + "cluster").text  # still signed in
        wait_for(
            lambda: _login_status(third, "roamer", "roamer-old-1") == 403,
            10.0,
            message="old password refused on member 3",
        )
        assert _login_status(third, "roamer", "roamer-new-2") == 200

        admin3 = Console(third, "nacos", third.admin_password)
        trail = admin3.get(C + "audit", object="user/roamer", kind="user").text
        rows = trail.split("<tbody>")[1]
        assert f"<td>{first.address}</td><td>nacos</td>" in rows  # created through member 1
        assert f"<td>{second.address}</td><td>roamer</td>" in rows  # changed through member 2
        assert "Not answering" not in trail

        for node in nodes:
            console = Console(node, "nacos", node.admin_password)

            def all_up(console: Console = console) -> str | None:
                text = console.get(C + "cluster").text
                return text if text.count("tag-up") == 3 else None

            page = wait_for(all_up, 15.0, message=f"three members UP on {node.address}")
            assert page.count("<td>LEADER</td>") == 1
