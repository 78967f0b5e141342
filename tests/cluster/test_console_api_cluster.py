"""The console API on a 3-member cluster: the first admin claimed on three members at once gives
exactly one admin (the losers get Nacos's 409 body, also when the refusal comes back from the
leader's apply), and namespaces written on one member are what the others list."""

from __future__ import annotations

import threading
from pathlib import Path

from testkit.harness import HttpResult, NodeProcess, running_cluster, wait_for

STATE = "/nacos/v1/console/server/state"
NAMESPACES = "/nacos/v1/console/namespaces"


def test_first_admin_race_and_namespaces_across_members(tmp_path: Path):
    with running_cluster(tmp_path, env={"NAMING_ADMIN_BOOTSTRAP": "false"}) as nodes:
        for node in nodes:
            state = node.request("GET", STATE).json()
            assert (state["startup_mode"], state["auth_admin_request"]) == ("cluster", "true")

        answers: dict[int, HttpResult] = {}
        start = threading.Barrier(len(nodes))

        def claim(i: int, node: NodeProcess) -> None:
            start.wait(10)
            answers[i] = node.request(
                "POST", "/nacos/v1/auth/users/admin", {"password": f"password-of-{i}"}
            )

        threads = [threading.Thread(target=claim, args=(i, n)) for i, n in enumerate(nodes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(a.status == 200 for a in answers.values()), answers
        bodies = [a.json() for a in answers.values()]
        winners = [b for b in bodies if "username" in b]
        losers = [b for b in bodies if "username" not in b]
        assert len(winners) == 1, bodies
        assert (
            losers == [{"code": 409, "message": None, "data": "have admin user cannot use it"}] * 2
        )
        password = winners[0]["password"]

        def logged_in_everywhere() -> bool:
            for node in nodes:
                login = node.request(
                    "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": password}
                )
                if (
                    login.status != 200
                    or node.request("GET", STATE).json()["auth_admin_request"] != "false"
                ):
                    return False
            return True

        wait_for(logged_in_everywhere, 10.0, message="the one admin on every member")

        for node in nodes:
            node.admin_password = password
        assert (
            nodes[0]
            .request(
                "POST",
                NAMESPACES,
                {
                    "customNamespaceId": "shared",
                    "namespaceName": "Shared",
                    "accessToken": nodes[0].token(),
                },
            )
            .json()
        )

        def listed_everywhere() -> bool:
            return all(
                "shared"
                in [
                    n["namespace"]
                    for n in node.request("GET", NAMESPACES, {"accessToken": node.token()}).json()[
                        "data"
                    ]
                ]
                for node in nodes
            )

        wait_for(listed_everywhere, 5.0, message="the namespace on every member")
        duplicate = nodes[2].request(
            "POST",
            NAMESPACES,
            {"customNamespaceId": "shared", "namespaceName": "x", "accessToken": nodes[2].token()},
        )
        assert (duplicate.status, duplicate.text) == (400, "caused: namespaceId already exist;")
