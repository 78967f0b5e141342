"""Cluster-wide accounts on 3 real members (issue #10 acceptance): users, permissions, password
changes, logouts and namespaces made on one member hold on every member within 2 s.

One cluster for the whole module (starting one costs more than every test here together);
each test works with users and namespaces of its own.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.harness import NodeProcess, running_cluster, wait_for

pytestmark = pytest.mark.xdist_group("accounts-cluster")

PASSWORD = "cluster-pass-1"
BOUND_S = 2.0  # the bound for a change made on one member to hold on the others


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with running_cluster(Path(tmp_path_factory.mktemp("accounts"))) as nodes:
        for node in nodes:  # the admin's logins (slow hashing) stay out of the timed parts
            node.token()
        yield nodes


def fresh(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def login(node: NodeProcess, user: str, password: str = PASSWORD) -> str | None:
    result = node.request("POST", "/nacos/v1/auth/login", {"username": user, "password": password})
    return str(result.json()["accessToken"]) if result.status == 200 else None


def read(node: NodeProcess, token: str, namespace: str = "") -> tuple[int, str]:
    """A read of the public (or given) namespace with ``token``: 200, or the 403 and why."""
    params = {"serviceName": "probe", "accessToken": token}
    if namespace:
        params["namespaceId"] = namespace
    result = node.request("GET", "/nacos/v1/ns/instance/list", params)
    return result.status, result.text


def within_bound(condition: Callable[[], bool], what: str) -> float:
    """Poll ``condition`` for at most the bound; return how long it took."""
    started = time.monotonic()
    wait_for(condition, BOUND_S, interval_s=0.05, message=what)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, (what, elapsed)
    return elapsed


def known(node: NodeProcess, user: str) -> bool:
    """Whether the member has applied the user (the admin's user list: polling with logins
    would count failures and trip the login throttle)."""
    found = node.admin_call("GET", "/users", {"username": user, "pageNo": 1, "pageSize": 10})
    return bool(found.status == 200 and found.json()["totalCount"] == 1)


def user_everywhere(cluster: list[NodeProcess], user: str) -> None:
    """Created on member 1 with read on public; wait until every member knows it (committed
    through Raft, then applied on each member)."""
    cluster[0].create_user(user, PASSWORD, ((":*:*", "r"),))
    for node in cluster:
        wait_for(functools.partial(known, node, user), 10, message=f"{user} on {node.address}")


def test_a_user_created_on_member_1_logs_in_on_member_3(cluster: list[NodeProcess]) -> None:
    user = fresh("created")
    cluster[0].create_user(user, PASSWORD, ((":*:*", "r"),))
    within_bound(lambda: known(cluster[2], user), "the user on member 3")
    token = login(cluster[2], user)
    assert token is not None and read(cluster[2], token)[0] == 200
    assert login(cluster[2], user, "wrong-password") is None


def test_a_token_issued_by_member_1_works_on_members_2_and_3(cluster: list[NodeProcess]) -> None:
    user = fresh("token")
    user_everywhere(cluster, user)
    token = login(cluster[0], user)
    assert token is not None
    for node in cluster:
        assert read(node, token)[0] == 200, node


def test_a_permission_granted_on_member_2_is_enforced_on_member_1(
    cluster: list[NodeProcess],
) -> None:
    user, namespace = fresh("granted"), fresh("ns")
    user_everywhere(cluster, user)
    token = login(cluster[0], user)
    assert token is not None
    assert read(cluster[0], token, namespace) == (403, "authorization failed!")

    rule = {"role": f"ROLE_{user}", "resource": f"{namespace}:*:*", "action": "r"}
    granted = cluster[1].admin_call("POST", "/permissions", rule)
    assert granted.status == 200, granted.text
    within_bound(lambda: read(cluster[0], token, namespace)[0] == 200, "grant on member 1")

    removed = cluster[1].admin_call("DELETE", "/permissions", rule)
    assert removed.status == 200, removed.text
    within_bound(
        lambda: read(cluster[0], token, namespace) == (403, "authorization failed!"),
        "revocation on member 1",
    )


def test_a_password_change_revokes_old_tokens_on_all_three(cluster: list[NodeProcess]) -> None:
    user = fresh("password")
    user_everywhere(cluster, user)
    tokens = [login(node, user) for node in cluster]
    assert all(tokens)
    changed = cluster[1].admin_call(
        "PUT", "/users", {"username": user, "newPassword": "new-pass-1"}
    )
    assert changed.status == 200, changed.text
    within_bound(
        lambda: all(read(node, str(token))[0] == 403 for node in cluster for token in tokens),
        "old tokens refused on every member",
    )
    # The new password works everywhere once replicated; the old one nowhere.
    for node in cluster:
        assert login(node, user, "new-pass-1") is not None, node.address
        assert login(node, user) is None


def test_a_logout_on_one_member_revokes_on_all(cluster: list[NodeProcess]) -> None:
    user = fresh("logout")
    user_everywhere(cluster, user)
    tokens = [login(node, user) for node in cluster]
    assert all(tokens)
    out = cluster[2].request("POST", "/nacos/v1/auth/logout", {"accessToken": str(tokens[2])})
    assert out.status == 200, out.text
    within_bound(
        lambda: all(
            read(node, str(token)) == (403, "token invalid!")
            for node in cluster
            for token in tokens
        ),
        "tokens refused on every member after the logout",
    )
    again = login(cluster[0], user)  # logging in again works
    assert again is not None and read(cluster[1], again)[0] == 200


def test_a_namespace_created_on_one_member_is_listed_by_the_others(
    cluster: list[NodeProcess],
) -> None:
    namespace = fresh("shared")
    created = cluster[0].request(
        "POST",
        "/nacos/v1/console/namespaces",
        {
            "customNamespaceId": namespace,
            "namespaceName": "Shared",
            "namespaceDesc": "made on member 1",
            "accessToken": cluster[0].token(),
        },
    )
    assert created.status == 200 and created.text == "true", created.text

    def listed(node: NodeProcess) -> bool:
        result = node.request("GET", "/nacos/v1/console/namespaces", {"accessToken": node.token()})
        return namespace in {ns["namespace"] for ns in result.json()["data"]}

    within_bound(lambda: listed(cluster[1]) and listed(cluster[2]), "namespace on members 2, 3")
