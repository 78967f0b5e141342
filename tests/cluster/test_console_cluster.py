"""The console's session on a cluster: opened on one member, valid on another (the cookie's
signing key derives from the cluster secret), and ended everywhere by a logout on any member
(the session holds an access token that every member re-validates)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from testkit.harness import NodeProcess, running_cluster, wait_for


def csrf_token(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def console_login(session: requests.Session, node: NodeProcess) -> None:
    login = node.base + "/nacos/console/login"
    answer = session.post(
        login,
        data={
            "csrfmiddlewaretoken": csrf_token(session, login),
            "username": "nacos",
            "password": node.admin_password,
        },
        headers={"Referer": login},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text
    assert answer.headers["Location"] == "/nacos/console/services"


@pytest.mark.slow
def test_a_session_opened_on_one_member_works_and_ends_on_the_others(tmp_path: Path):
    with running_cluster(tmp_path, 3) as nodes:
        first, second, third = nodes
        browser = requests.Session()
        console_login(browser, first)
        # The same cookie, sent to the other members (the cookie's path is /nacos/, its host
        # is 127.0.0.1: a browser would send it to every member on this host anyway).
        for member in (second, third):
            page = browser.get(member.base + "/nacos/console/services", allow_redirects=False)
            assert page.status_code == 200, (member.address, page.status_code, page.text[:300])
            assert 'id="current-user">nacos<' in page.text

        # A copy of the cookie from before the logout (a second tab, or an attacker's copy).
        copy = {"nacos_session": browser.cookies["nacos_session"]}

        # Log out on the second member, with a CSRF token it issued: the session (and with it
        # the token) is refused by every member within 2 s.
        services = second.base + "/nacos/console/services"
        logout = browser.post(
            second.base + "/nacos/console/logout",
            data={"csrfmiddlewaretoken": csrf_token(browser, services)},
            headers={"Referer": services},
            allow_redirects=False,
            timeout=10,
        )
        assert logout.status_code == 302
        assert logout.headers["Location"] == "/nacos/console/login?out=1"

        def refused_everywhere() -> bool:
            for member in nodes:
                answer = requests.get(
                    member.base + "/nacos/console/services",
                    cookies=copy,
                    allow_redirects=False,
                    timeout=5,
                )
                # expired=1: the cookie was valid, the token in it was refused.
                if "expired=1" not in answer.headers.get("Location", ""):
                    return False
            return True

        wait_for(refused_everywhere, 2.0, message="the logout ended the session everywhere")
