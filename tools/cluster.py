#!/usr/bin/env python3
"""A local 3-member cluster with Celery sync: ``python3 dev.py cluster`` (or ``make cluster``).

Starts, all on 127.0.0.1 and in this order: ``redis-server`` (port 6399, no persistence), one
``celery -A server worker`` and the members on 8848, 8858 and 8868 (raft ports 7848, 7858,
7868), data under ``data/cluster/n<i>``, logs next to it. The cluster secret and the admin
password are generated on the first start and kept in ``data/cluster/credentials.json`` (mode
0600), so that a second start finds its journals and users again. Waits until every member says
UP, prints the addresses, then supervises until Ctrl-C or SIGTERM, and stops everything by PID:
members first, then the worker, then Redis.

Children run in their own session: Ctrl-C reaches only this process, which stops them in order.
``--no-redis`` runs the members with in-process sync instead (no Redis, no worker).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's modules are importable

from testkit.harness import port_free  # noqa: E402 - after the path set-up above
from testkit.services import celery_worker_command, redis_command, worker_ready  # noqa: E402

VENV_PY = ROOT / ".venv" / "bin" / "python"
START_DEADLINE_S = 60.0
STOP_DEADLINES_S = {"node": 20.0, "worker": 15.0, "redis": 10.0}


@dataclass
class Child:
    name: str
    kind: str  # node | worker | redis
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    reported_exit: bool = False

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def node_up(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/nacos/v1/ns/operator/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.loads(resp.read()).get("status") == "UP")
    except (OSError, ValueError):
        return False


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def credentials(path: Path) -> dict[str, str]:
    """The cluster secret and admin password: generated once, then read from ``path``."""
    if path.exists():
        data = json.loads(path.read_text())
        return {"secret": str(data["secret"]), "password": str(data["password"])}
    data = {"secret": secrets.token_urlsafe(32), "password": secrets.token_urlsafe(12)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    return data


class Cluster:
    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        self.args = args
        self.out = out
        self.data = Path(args.data_dir).resolve()
        self.python = str(VENV_PY if VENV_PY.exists() else Path(sys.executable))
        self.ports = [args.base_port + i * args.step for i in range(args.nodes)]
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- start ---------------------------------------------------------------------------

    def check_ports(self) -> None:
        wanted = [p for port in self.ports for p in (port, port - 1000)]
        if not self.args.no_redis:
            wanted.append(self.args.redis_port)
        busy = [p for p in wanted if not port_free(p)]
        if busy:
            raise SystemExit(f"ports in use on 127.0.0.1: {busy} (another cluster running?)")

    def build(self, secret: str, password: str) -> None:
        redis_url = f"redis://127.0.0.1:{self.args.redis_port}/0"
        if not self.args.no_redis:
            if shutil.which("redis-server") is None:
                raise SystemExit(
                    "redis-server not found: apt-get install redis-server "
                    "(or run with --no-redis for in-process sync)"
                )
            redis_dir = self.data / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            self.children.append(
                Child(
                    "redis",
                    "redis",
                    redis_command(self.args.redis_port, redis_dir),
                    redis_dir / "redis.log",
                )
            )
            self.children.append(
                Child(
                    "celery worker",
                    "worker",
                    celery_worker_command(self.python, "naming-cluster@%h"),
                    self.data / "worker" / "worker.log",
                    env={
                        "DJANGO_SETTINGS_MODULE": "server.settings",
                        "NAMING_CLUSTER_SECRET": secret,
                        "NAMING_REDIS_URL": redis_url,
                        "NAMING_DATA_DIR": str(self.data / "worker"),
                    },
                )
            )
        members = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        for i, port in enumerate(self.ports):
            data_dir = self.data / f"n{i}"
            env = {
                "NAMING_CLUSTER_SECRET": secret,
                "NAMING_ADMIN_PASSWORD": password,
                "NAMING_REDIS_URL": "" if self.args.no_redis else redis_url,
            }
            self.children.append(
                Child(
                    f"node 127.0.0.1:{port}",
                    "node",
                    [
                        self.python,
                        str(ROOT / "manage.py"),
                        "runnode",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--data-dir",
                        str(data_dir),
                        "--members",
                        members,
                    ],
                    data_dir / "node.log",
                    env=env,
                )
            )

    def wait(self, child: Child, ready: Callable[[], bool], deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and not self.stopping.is_set():
            if not child.alive:
                raise RuntimeError(f"{child.name} exited during start-up:\n{child.tail()}")
            if ready():
                return
            time.sleep(0.2)
        if self.stopping.is_set():
            raise KeyboardInterrupt
        raise RuntimeError(f"{child.name} not ready after {deadline_s:.0f} s:\n{child.tail()}")

    def start(self) -> None:
        for child in self.children:
            if child.kind == "redis":
                child.start()
                self.wait(child, functools.partial(redis_answers, self.args.redis_port), 10)
            elif child.kind == "worker":
                offset = child.log_path.stat().st_size if child.log_path.exists() else 0
                child.start()
                self.wait(child, functools.partial(worker_ready, child.log_path, offset), 30)
            else:
                child.start()  # members start together: each waits for a raft quorum
        for child, port in zip(self._nodes(), self.ports, strict=True):
            self.wait(child, functools.partial(node_up, port), START_DEADLINE_S)

    def _nodes(self) -> list[Child]:
        return [c for c in self.children if c.kind == "node"]

    # -- run and stop --------------------------------------------------------------------

    def supervise(self) -> None:
        """Until a signal: report a child that exits on its own (once), keep the rest running."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.proc is not None and not child.alive and not child.reported_exit:
                    child.reported_exit = True
                    self.say(
                        f"!! {child.name} exited with {child.proc.returncode} "
                        f"(log: {child.log_path})"
                    )
            if not any(c.alive for c in self._nodes()):
                self.say("every member has exited; stopping")
                return

    def stop(self) -> None:
        """Members one at a time (each leaves while its peers still answer: measured ~0.5 s
        each, against ~4-10 s when all get SIGTERM at once), then the worker, then Redis."""
        for kind in ("node", "worker", "redis"):
            for child in self.children:
                if child.kind != kind or not child.alive:
                    continue
                assert child.proc is not None
                child.proc.send_signal(signal.SIGTERM)
                try:
                    child.proc.wait(STOP_DEADLINES_S[kind])
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name} ignored SIGTERM; killing it")
                    child.proc.kill()
                    child.proc.wait(10)
                self.say(f"stopped {child.name} (exit {child.proc.returncode})")

    def banner(self, password: str) -> None:
        nodes = self._nodes()
        self.say("")
        self.say(f"cluster UP ({len(nodes)} members, sync via {self._sync_mode()}):")
        for child, port in zip(nodes, self.ports, strict=True):
            assert child.proc is not None
            self.say(
                f"  http://127.0.0.1:{port}/nacos  raft {port - 1000}  pid {child.proc.pid}  "
                f"log {shown(child.log_path)}"
            )
        for child in self.children:
            if child.kind != "node" and child.proc is not None:
                self.say(f"  {child.name}: pid {child.proc.pid}  log {shown(child.log_path)}")
        self.say(f"  admin: nacos / {password}  (kept in {shown(self.data / 'credentials.json')})")
        self.say(f"  metrics: curl -s 127.0.0.1:{self.ports[0]}/nacos/v1/ns/operator/metrics")
        self.say(f"stop: Ctrl-C here, or kill -TERM {os.getpid()}")

    def _sync_mode(self) -> str:
        if self.args.no_redis:
            return "in-process"
        return f"celery on redis://127.0.0.1:{self.args.redis_port}/0"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dev.py cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="members (default 3)")
    parser.add_argument("--base-port", type=int, default=8848, help="first HTTP port (8848)")
    parser.add_argument("--step", type=int, default=10, help="port step between members (10)")
    parser.add_argument("--redis-port", type=int, default=6399, help="redis port (6399)")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "cluster"))
    parser.add_argument("--no-redis", action="store_true", help="in-process sync, no celery")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 9:
        parser.error("--nodes must be 2-9")
    if args.step < 2 or args.base_port - 1000 < 1 or args.base_port + args.step * 9 > 65535:
        parser.error("ports out of range")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    cluster = Cluster(args)

    def on_signal(signum: int, _frame: Any) -> None:
        cluster.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster.check_ports()
    creds = credentials(cluster.data / "credentials.json")
    cluster.build(creds["secret"], creds["password"])
    code = 0
    try:
        cluster.say(f"starting {args.nodes} members under {cluster.data} ...")
        cluster.start()
        cluster.banner(creds["password"])
        cluster.supervise()
    except KeyboardInterrupt:
        cluster.say("interrupted during start-up")
        code = 130
    except RuntimeError as exc:
        cluster.say(f"start-up failed: {exc}")
        code = 1
    finally:
        cluster.say("stopping ...")
        cluster.stop()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
