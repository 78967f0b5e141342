"""Hostile clients against authentication (issue #8 items 3, 6, 7, 8), on real node processes.

Source addresses: loopback is a /8 and the node trusts ``REMOTE_ADDR``, so a client socket bound
to 127.0.0.2 / 127.0.0.3 / ... is a distinct source address to the node.
"""

from __future__ import annotations

import http.client
import json
import secrets
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from testkit.harness import NodeProcess, running_node

NS = "/nacos/v1/ns"


class Client:
    """One keep-alive HTTP connection from a chosen loopback source address."""

    def __init__(self, node: NodeProcess, source: str = "127.0.0.1", timeout: float = 30.0):
        self.conn = http.client.HTTPConnection(
            node.host, node.port, timeout=timeout, source_address=(source, 0)
        )

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> tuple[int, str]:
        query = urllib.parse.urlencode(params or {})
        url = path + (f"?{query}" if query else "")
        try:
            self.conn.request(method, url)
            resp = self.conn.getresponse()
            return resp.status, resp.read().decode()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # the next request reconnects
            raise

    def close(self) -> None:
        self.conn.close()


def login(node: NodeProcess, username: str, password: str, source: str = "127.0.0.1") -> Any:
    client = Client(node, source)
    try:
        return client.call(
            "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
        )
    finally:
        client.close()


def admin(node: NodeProcess, method: str, params: dict[str, str]) -> tuple[int, str]:
    return node_call(node, method, "/nacos/v1/auth/users", {**params, "accessToken": node.token()})


def node_call(
    node: NodeProcess, method: str, path: str, params: dict[str, Any] | None = None
) -> tuple[int, str]:
    client = Client(node)
    try:
        return client.call(method, path, params)
    finally:
        client.close()


def new_user(node: NodeProcess) -> tuple[str, str]:
    username, password = f"u{secrets.token_hex(4)}", secrets.token_hex(8)
    node.create_user(username, password)
    return username, password


def token_of(node: NodeProcess, username: str, password: str) -> str:
    status, body = login(node, username, password)
    assert status == 200, body
    return str(json.loads(body)["accessToken"])


def read_with(node: NodeProcess, token: str) -> tuple[int, str]:
    return node_call(
        node, "GET", NS + "/instance/list", {"serviceName": "probe", "accessToken": token}
    )


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("auth-node"))) as node:
        yield node


# -- item 3: hashing never takes the request threads; throttling ------------------------------


# 16 attackers, each sending wrong-password logins back to back from its own loopback address.
# They run in a child process at the lowest CPU priority: a real attacker is on another machine,
# and on a 2-core test box an attacker at full priority would measure its own fight with the
# server for the CPU rather than the server. Stops when stdin closes, or after 90 s.
ATTACKER = """
import http.client, json, os, sys, threading, time, urllib.parse
os.nice(19)
host, port = sys.argv[1], int(sys.argv[2])
stop, counts, lock = threading.Event(), {}, threading.Lock()
def attack(i):
    conn = http.client.HTTPConnection(host, port, timeout=30, source_address=(f"127.0.1.{i}", 0))
    query = urllib.parse.urlencode({"username": "nacos", "password": f"wrong-{i}"})
    end = time.monotonic() + 90
    while not stop.is_set() and time.monotonic() < end:
        try:
            conn.request("POST", "/nacos/v1/auth/login?" + query)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (http.client.HTTPException, OSError):
            conn.close()
            status = -1
        with lock:
            counts[status] = counts.get(status, 0) + 1
threads = [threading.Thread(target=attack, args=(i,)) for i in range(1, 17)]
for t in threads:
    t.start()
print("started", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
"""


def test_wrong_password_flood_keeps_authenticated_reads_fast(tmp_path: Path):
    """16 clients hammer wrong passwords (throttling lifted, so only the hashing pool protects
    the request threads); a normal authenticated read keeps p99 < 50 ms over 200 reads.
    On the old code every wrong password hashed on a request thread: reads waited seconds."""
    env = {"NAMING_LOGIN_MAX_FAILURES": "100000", "NAMING_LOGIN_MAX_ADDRESS_FAILURES": "100000"}
    with running_node(tmp_path / "node", env=env) as node:
        token = node.token()
        attackers = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, node.host, str(node.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        reader = Client(node)
        rounds: list[tuple[float, float]] = []
        try:
            assert attackers.stdout is not None and attackers.stdout.readline() == "started\n"
            time.sleep(2)  # let the flood settle in before measuring
            # Up to three samples of 200 reads: other tests share this box, and one burst of
            # their load can own a p99. The old code fails every round by two orders of magnitude.
            deadline = time.monotonic() + 60  # bounded even when reads are starved
            for _ in range(3):
                latencies: list[float] = []
                for _ in range(200):
                    assert time.monotonic() < deadline, f"only {len(latencies)} reads in 60 s"
                    started = time.perf_counter()
                    status, body = reader.call(
                        "GET", NS + "/instance/list", {"serviceName": "probe", "accessToken": token}
                    )
                    latencies.append(time.perf_counter() - started)
                    assert status == 200, body
                latencies.sort()
                rounds.append((statistics.median(latencies), latencies[197]))
                if rounds[-1][1] < 0.050:
                    break
            busy = auth_metrics(node)
        finally:
            reader.close()
            out, _ = attackers.communicate("", timeout=60)
        answers = json.loads(out.splitlines()[-1])
        print(
            "reads under a 16-client wrong-password flood (median, p99 ms): "
            + ", ".join(f"({m * 1000:.1f}, {p * 1000:.1f})" for m, p in rounds)
            + f"; attack answers {answers}; auth metrics {busy}"
        )
        assert rounds[-1][1] < 0.050, rounds
        # Every wrong password got a quick clear refusal: 403 (checked) or 503 (pool busy).
        assert set(answers) <= {"403", "503"}, answers
        assert busy["hashWorkers"] == 1 and busy["hashRejected"] >= 1
        assert busy["failedLogins"] >= 1


def auth_metrics(node: NodeProcess) -> dict[str, Any]:
    status, body = node_call(node, "GET", NS + "/operator/metrics")
    assert status == 200, body
    return dict(json.loads(body)["auth"])


def test_failed_logins_are_throttled_per_user_and_address(tmp_path: Path):
    env = {"NAMING_LOGIN_MAX_FAILURES": "3", "NAMING_LOGIN_MAX_ADDRESS_FAILURES": "6"}
    with running_node(tmp_path / "node", env=env) as node:
        password = node.admin_password
        for _ in range(3):
            assert login(node, "nacos", "wrong", "127.0.0.2") == (403, "unknown user!")
        # Locked for this user from this address: even the right password is refused there...
        status, body = login(node, "nacos", password, "127.0.0.2")
        assert status == 403 and "too many failed logins" in body, body
        status, body = Client(node, "127.0.0.2").call(
            "GET",
            NS + "/instance/list",
            {"serviceName": "p", "username": "nacos", "password": password},
        )
        assert status == 403 and "too many failed logins" in body, body
        # ... but works from another address, and another user still can from 127.0.0.2.
        assert login(node, "nacos", password, "127.0.0.3")[0] == 200
        username, user_password = new_user(node)
        assert login(node, username, user_password, "127.0.0.2")[0] == 200

        # Per address: spraying other user names from one address locks the address.
        for i in range(6):
            assert login(node, f"nobody{i}", "wrong", "127.0.0.4") == (403, "unknown user!")
        status, body = login(node, username, user_password, "127.0.0.4")
        assert status == 403 and "too many failed logins" in body, body
        assert login(node, username, user_password, "127.0.0.5")[0] == 200

        metrics = auth_metrics(node)
        assert metrics["throttled"] >= 3 and metrics["failedLogins"] >= 9
        log = node.log()
        assert "failed login for user 'nacos' from 127.0.0.2" in log, log
        assert "locked" in log


# -- item 7: tokens revoked by password change, deletion, logout -------------------------------


def test_password_change_revokes_old_tokens_and_password(auth_node: NodeProcess):
    username, password = new_user(auth_node)
    old = token_of(auth_node, username, password)
    assert read_with(auth_node, old)[0] == 200
    status, body = admin(auth_node, "PUT", {"username": username, "newPassword": "n" * 12})
    assert status == 200, body
    assert read_with(auth_node, old) == (403, "token invalid!")
    # The credential cache forgot the old password as well.
    status, _ = node_call(
        auth_node,
        "GET",
        NS + "/instance/list",
        {"serviceName": "probe", "username": username, "password": password},
    )
    assert status == 403
    assert read_with(auth_node, token_of(auth_node, username, "n" * 12))[0] == 200


def test_deleting_a_user_revokes_tokens_even_if_the_name_is_reused(auth_node: NodeProcess):
    username, password = new_user(auth_node)
    old = token_of(auth_node, username, password)
    assert admin(auth_node, "DELETE", {"username": username})[0] == 200
    assert read_with(auth_node, old)[0] == 403
    assert admin(auth_node, "POST", {"username": username, "password": password})[0] == 200
    assert read_with(auth_node, old) == (403, "token invalid!")
    # The new user is authenticated but inherits none of the old user's roles (issue #10).
    fresh = token_of(auth_node, username, password)
    assert read_with(auth_node, fresh) == (403, "authorization failed!")
    roles = auth_node.admin_call("GET", "/roles", {"username": username}).json()
    assert roles["totalCount"] == 0


def test_logout_revokes_every_token_of_the_caller_only(auth_node: NodeProcess):
    username, password = new_user(auth_node)
    first = token_of(auth_node, username, password)
    second = token_of(auth_node, username, password)
    other_user, other_password = new_user(auth_node)
    other = token_of(auth_node, other_user, other_password)
    status, body = node_call(auth_node, "POST", "/nacos/v1/auth/logout", {"accessToken": first})
    assert status == 200, body
    assert read_with(auth_node, first) == (403, "token invalid!")
    assert read_with(auth_node, second) == (403, "token invalid!")
    assert read_with(auth_node, other)[0] == 200
    assert node_call(auth_node, "POST", "/nacos/v1/auth/logout")[0] == 403
    assert read_with(auth_node, token_of(auth_node, username, password))[0] == 200


# -- item 6 (part): a signed token without exp ------------------------------------------------


def test_signed_token_without_exp_is_token_invalid(auth_node: NodeProcess):
    key = bytes.fromhex((auth_node.data_dir / "token.key").read_text().strip())
    for claims in ({"sub": "nacos"}, {"sub": "nacos", "gen": 0}, {"exp": 2**40, "gen": 0}):
        token = jwt.encode(claims, key, "HS256")
        assert read_with(auth_node, token) == (403, "token invalid!"), claims


# -- item 8: registry reads that revealed data anonymously -------------------------------------


ANONYMOUS_REFUSED = [
    ("GET", NS + "/instance/statuses", {"key": "public##DEFAULT_GROUP@@svc"}),
    ("PUT", NS + "/service/checksum", {"serviceName": "svc"}),
    ("GET", NS + "/catalog/rt/service", {"serviceName": "svc"}),
    ("GET", NS + "/operator/push/state", {"reset": "true"}),
    ("GET", NS + "/operator/push/state", {"detail": "true"}),
]


@pytest.mark.parametrize(("method", "path", "params"), ANONYMOUS_REFUSED)
def test_registry_reads_refused_without_credentials(
    auth_node: NodeProcess, method: str, path: str, params: dict[str, str]
):
    status, body = node_call(auth_node, method, path, params)
    assert (status, body) == (403, "user not found!")
    status, body = node_call(auth_node, method, path, {**params, "accessToken": auth_node.token()})
    assert status != 403, body  # authenticated: answered (200, or 404 for the unknown service)


def test_push_state_without_reset_stays_public(auth_node: NodeProcess):
    status, body = node_call(auth_node, "GET", NS + "/operator/push/state")
    assert status == 200 and json.loads(body)["reset"] is False
