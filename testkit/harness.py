"""The one harness for real node processes on 127.0.0.1 (tests, bench and tools share it).

``NodeProcess`` starts ``manage.py runnode`` on free loopback ports with its own data dir, waits
until ``operator/metrics`` says UP, and stops it by PID (SIGTERM, or SIGKILL for crash tests).
``wait_for`` polls a predicate until a deadline; every loop here is bounded in time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    deadline_s: float,
    interval_s: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll until ``predicate()`` is truthy; return its value, or fail after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the node may be restarting: keep polling until the deadline
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {deadline_s}s waiting for {message}; last error: {last_error!r}"
    )


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listen_port_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range: a port picked inside it can be taken by any
    outgoing connection before the node binds it (the hostile tests open thousands of client
    sockets next to cluster tests, and a raft port lost that way left a member without a leader).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 12000)
    return 11000, low - 1


def free_port() -> int:
    first, last = _listen_port_range()
    for _ in range(200):
        port = first + secrets.randbelow(last - first)
        if port_free(port):
            return port
    raise RuntimeError("no free port found")


def free_node_port() -> int:
    """A port P with P, P-1000 (the raft port) and P+1000 (the gRPC port) all free, all three
    below the ephemeral range."""
    first, last = _listen_port_range()
    first, last = first + 1000, last - 1000
    for _ in range(200):
        port = first + secrets.randbelow(last - first)
        if port_free(port) and port_free(port - 1000) and port_free(port + 1000):
            return port
    raise RuntimeError("no free port pair found")


class HttpResult:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class NodeProcess:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        members: str = "",
        host: str = "127.0.0.1",
        launcher: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_node_port()
        self.members = members
        self.host = host
        self.launcher = launcher  # e.g. ("ip", "netns", "exec", ns): it execs, same PID
        self.admin_password = "test-" + secrets.token_hex(8)
        self.env = {
            "NAMING_ADMIN_PASSWORD": self.admin_password,
            # Tests register persistent instances only on loopback; never probe anything else.
            "NAMING_HEALTH_CHECK_NETWORKS": "127.0.0.0/8",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "node.log"
        self._token: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def start(self, wait: bool = True) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        self.proc = subprocess.Popen(
            [
                *self.launcher,
                sys.executable,
                str(ROOT / "manage.py"),
                "runnode",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *(["--members", self.members] if self.members else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            try:
                self.wait_up()
            except BaseException:
                self.kill9()  # the caller gets no handle to stop a node that never came up
                raise
        return self

    def wait_up(self, deadline_s: float = 60.0) -> None:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            return bool(
                self.request("GET", "/nacos/v1/ns/operator/metrics").json()["status"] == "UP"
            )

        try:
            wait_for(up, deadline_s, message=f"node {self.address} UP")
        except AssertionError:
            raise AssertionError(f"node {self.address} did not come UP:\n{self.log()}") from None
        self._token = None

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by PID and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"node {self.address} ignored SIGTERM:\n{self.log()}") from None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> NodeProcess:
        self.stop()
        return self.start()

    # -- HTTP ------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            # A member that has just (re)started answers 503 until it has the replicated
            # accounts (they come with its first contact with the Raft leader).
            deadline = time.monotonic() + 60
            while True:
                result = self.request(
                    "POST",
                    "/nacos/v1/auth/login",
                    {"username": "nacos", "password": self.admin_password},
                )
                if result.status != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert result.status == 200, result.text
            self._token = str(result.json()["accessToken"])
        return self._token

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        query = urllib.parse.urlencode(params or {})
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResult(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return HttpResult(exc.code, exc.read(), dict(exc.headers))

    def api(
        self, method: str, path: str, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> HttpResult:
        """An authenticated call to ``/nacos/v1/ns`` + path."""
        return self.request(
            method, "/nacos/v1/ns" + path, {**(params or {}), "accessToken": self.token()}, **kwargs
        )

    def admin_call(self, method: str, path: str, params: dict[str, Any]) -> HttpResult:
        """An admin's call to ``/nacos/v1/auth`` + path, parameters in the query string."""
        return self.request(
            method, "/nacos/v1/auth" + path, {**params, "accessToken": self.token()}
        )

    def create_user(
        self,
        username: str,
        password: str,
        grants: tuple[tuple[str, str], ...] = ((":*:*", "rw"),),
        role: str | None = None,
    ) -> None:
        """A user with a role of its own (``ROLE_<username>``) holding ``grants``
        ((resource, action) pairs; by default read and write on the public namespace)."""
        result = self.admin_call("POST", "/users", {"username": username, "password": password})
        assert result.status == 200, result.text
        if not grants:
            return
        role = role or f"ROLE_{username}"
        result = self.admin_call("POST", "/roles", {"role": role, "username": username})
        assert result.status == 200, result.text
        for resource, action in grants:
            result = self.admin_call(
                "POST", "/permissions", {"role": role, "resource": resource, "action": action}
            )
            assert result.status == 200, result.text

    def client(self, **kwargs: Any) -> Any:
        import nacos

        return nacos.NacosClient(
            self.address, username="nacos", password=self.admin_password, **kwargs
        )


@contextlib.contextmanager
def running_node(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[NodeProcess]:
    node = NodeProcess(data_dir, env=env).start()
    try:
        yield node
    finally:
        try:
            node.stop()
        finally:
            node.kill9()


CLUSTER_SECRET = "test-cluster-" + secrets.token_hex(8)


def make_cluster(
    base: Path,
    n: int = 3,
    env: dict[str, str] | None = None,
    hosts: list[tuple[str, tuple[str, ...]]] | None = None,
    explicit_raft_ports: bool = False,
    nonvoters: Collection[int] = (),
) -> list[NodeProcess]:
    """Start ``n`` members with one member list and one secret; wait until UP.

    ``hosts`` places member i on (address, launcher), e.g. a test host in a network namespace;
    by default every member is on 127.0.0.1. The members at the indexes in ``nonvoters`` are
    listed with ``/nonvoter`` (Raft read-only nodes).
    """
    places = hosts or [("127.0.0.1", ())] * n
    ports: list[int] = []
    while len(ports) < n:
        port = free_node_port()
        if port not in ports and port - 1000 not in ports and port + 1000 not in ports:
            ports.append(port)
    raft: list[str] = [""] * n
    if explicit_raft_ports:  # host:port:raft_port, with raft ports away from port - 1000
        for i in range(n):
            candidate = ports[i] + 7
            while not port_free(candidate) or candidate in ports:
                candidate += 1
            raft[i] = f":{candidate}"
    members = ",".join(
        f"{places[i][0]}:{p}{raft[i]}" + ("/nonvoter" if i in nonvoters else "")
        for i, p in enumerate(ports)
    )
    password = "test-" + secrets.token_hex(8)
    nodes = []
    for i, port in enumerate(ports):
        node = NodeProcess(
            base / f"n{i}",
            port=port,
            members=members,
            env={"NAMING_CLUSTER_SECRET": CLUSTER_SECRET, **(env or {})},
            host=places[i][0],
            launcher=places[i][1],
        )
        node.admin_password = password
        node.env["NAMING_ADMIN_PASSWORD"] = password
        nodes.append(node.start(wait=False))
    try:
        for node in nodes:
            node.wait_up()
    except BaseException:
        # The caller never gets the list, so nobody else would stop these processes.
        stop_cluster(nodes)
        raise
    return nodes


def stop_cluster(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        try:
            node.stop()
        finally:
            node.kill9()


def distro_status(node: NodeProcess) -> dict[str, Any]:
    return dict(node.request("GET", "/nacos/v1/ns/operator/metrics", timeout=5).json()["distro"])


def assert_converged(nodes: list[NodeProcess], deadline_s: float = 15.0) -> str:
    """Every live member holds the same ephemeral data (one digest over all datums)."""

    def digests() -> set[str] | None:
        live = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
        found = {distro_status(n)["digest"] for n in live}
        return found if len(found) == 1 else None

    found = wait_for(digests, deadline_s, interval_s=0.2, message="members to converge")
    assert found is not None
    return found.pop()


@contextlib.contextmanager
def running_cluster(base: Path, n: int = 3, **kwargs: Any) -> Iterator[list[NodeProcess]]:
    """``make_cluster`` that stops every member by PID on the way out (as ``running_node``)."""
    nodes = make_cluster(base, n, **kwargs)
    try:
        yield nodes
    finally:
        stop_cluster(nodes)


def leader_of(nodes: list[NodeProcess]) -> NodeProcess:
    """The member every live member names as Raft leader (waits for agreement)."""

    def agreed() -> NodeProcess | None:
        named = set()
        for node in nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            leader = node.request("GET", "/nacos/v1/ns/raft/leader", timeout=2).json()["leader"]
            if leader is None:
                return None
            named.add(json.loads(leader)["ip"])
        if len(named) != 1:
            return None
        address = named.pop()
        return next((n for n in nodes if n.address == address), None)

    found = wait_for(agreed, 30, interval_s=0.2, message="one agreed raft leader")
    assert found is not None
    return found


def probe_write(node: NodeProcess) -> bool:
    """One acknowledged persistent write through ``node`` (a fresh service each time)."""
    result = node.api("POST", "/service", {"serviceName": f"probe-{time.time_ns()}"}, timeout=5)
    return result.status == 200


def kill_leader_and_time_failover(nodes: list[NodeProcess]) -> tuple[NodeProcess, float]:
    """kill -9 the leader; seconds until a survivor acknowledges a write. Returns the victim."""
    leader = leader_of(nodes)
    survivor = next(n for n in nodes if n is not leader)
    killed_at = time.monotonic()
    leader.kill9()
    wait_for(
        functools.partial(probe_write, survivor),
        30,
        interval_s=0.02,
        message="a write after the leader died",
    )
    return leader, time.monotonic() - killed_at
