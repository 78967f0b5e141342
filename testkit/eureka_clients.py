"""Two real Eureka clients for the end-to-end tests of the Eureka facade.

* :class:`JsClient` runs npm's ``eureka-js-client`` (pinned :data:`EUREKA_JS_VERSION`) in a Node
  process of its own through ``testkit/js/eureka_client.js``, which reports the client's events as
  JSON lines; a reader thread queues them. The package is installed once, by
  :func:`install_eureka_js`, into the git-ignored ``.npm-eureka/`` at the top of the tree.
* :class:`Prometheus` runs Debian's ``/usr/bin/prometheus`` (2.42) with one ``eureka_sd_configs``
  job pointed at the facade, on a free loopback port with a data dir of its own, and reads the
  targets it discovered from ``/api/v1/targets``.

Both are stopped by PID (the ``with`` blocks and ``stop``); every wait has a deadline.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testkit.harness import ROOT, free_port, wait_for

EUREKA_JS_VERSION = "4.5.0"
NPM_DIR = ROOT / ".npm-eureka"
DRIVER = ROOT / "testkit" / "js" / "eureka_client.js"
PROMETHEUS = Path("/usr/bin/prometheus")

Event = dict[str, Any]


def install_eureka_js() -> Path:
    """``npm install`` the pinned eureka-js-client once; returns its ``node_modules``.

    A file lock and a marker written after a complete install keep two test workers (or a
    half-finished earlier install) from using a partial tree.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("eureka-js-client needs Node.js and npm (apt-get install nodejs npm)")
    NPM_DIR.mkdir(exist_ok=True)
    marker = NPM_DIR / f".installed-{EUREKA_JS_VERSION}"
    with open(NPM_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--loglevel=error",
                    "--prefix",
                    str(NPM_DIR),
                    f"eureka-js-client@{EUREKA_JS_VERSION}",
                ],
                cwd=NPM_DIR,
                check=True,
                timeout=600,
            )
            marker.write_text("ok")
    return NPM_DIR / "node_modules"


class JsClient:
    """One eureka-js-client in a Node process of its own.

    ``instance_id`` None: the client sends no ``instanceId`` and keys itself by ``host_name``,
    like a default install. ``lease``: an optional ``leaseInfo`` (renewalIntervalInSecs,
    durationInSecs) sent with the registration, so a test can use short leases.
    """

    def __init__(
        self,
        *,
        port: int,
        service_path: str,
        app: str,
        host_name: str,
        instance_port: int,
        user: str = "",
        password: str = "",
        ip_addr: str = "127.0.0.1",
        instance_id: str | None = None,
        heartbeat_ms: int = 1000,
        fetch_ms: int = 1000,
        watch: tuple[str, ...] = (),
        lease: dict[str, int] | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "servicePath": service_path,
            "user": user,
            "password": password,
            "app": app,
            "hostName": host_name,
            "ipAddr": ip_addr,
            "instancePort": instance_port,
            "instanceId": instance_id,
            "heartbeatMs": heartbeat_ms,
            "fetchMs": fetch_ms,
            "watch": list(watch),
            "leaseInfo": lease,
        }
        node_modules = install_eureka_js()
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NODE_PATH": str(node_modules)},
        )
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []  # every event taken so far, for failure messages
        threading.Thread(target=self._read, name="eureka-js-reader", daemon=True).start()

    def _read(self) -> None:
        """Owned by this client; ends at the process's EOF (it exits or is killed)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "raw", "line": line.rstrip()})

    def wait(
        self,
        event: str,
        timeout: float = 30.0,
        where: Callable[[Event], bool] = lambda _: True,
    ) -> Event:
        """The next ``event`` (matching ``where``); fails on an ``error`` event or the deadline."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {event!r} within {timeout}s; the client said:\n{self.tail()}"
                )
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(item)
            if item["event"] == "error":
                raise AssertionError(f"eureka-js-client failed: {item}; {self.tail()}")
            if item["event"] == event and where(item):
                return item

    def tail(self, n: int = 15) -> str:
        return "\n".join(json.dumps(e) for e in self.seen[-n:])

    def stop(self, timeout: float = 20.0) -> int:
        """The client's own ``stop()`` (it DELETEs its registration), then the process ends."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdin is not None:
            self.proc.stdin.close()


@contextmanager
def js_client(**kwargs: Any) -> Iterator[JsClient]:
    client = JsClient(**kwargs)
    try:
        yield client
    finally:
        client.kill()


class Prometheus:
    """Debian's Prometheus with one ``eureka_sd_configs`` job (``job``) on the facade at
    ``server`` (``http://127.0.0.1:<port>/eureka``); Prometheus appends ``/apps``."""

    def __init__(
        self,
        data_dir: Path,
        server: str,
        user: str = "",
        password: str = "",
        refresh: str = "1s",
        job: str = "eureka",
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.job = job
        sd: dict[str, Any] = {"server": server, "refresh_interval": refresh}
        if user:
            sd["basic_auth"] = {"username": user, "password": password}
        config = {
            # Discovery is what is tested: scrape the (closed) loopback targets rarely.
            "global": {"scrape_interval": "1h", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": job, "eureka_sd_configs": [sd]}],
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = data_dir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = data_dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        if not PROMETHEUS.exists():
            raise RuntimeError("Debian's prometheus is not installed (apt-get install prometheus)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=debug",
            ],
            cwd=self.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for(self._ready, 60, interval_s=0.2, message="prometheus ready")
        except BaseException:
            self.stop()
            raise AssertionError(f"prometheus did not start:\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        with urllib.request.urlopen(self.base + "/-/ready", timeout=5) as resp:
            return bool(resp.status == 200)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def targets(self) -> list[dict[str, Any]]:
        """The job's active targets from ``/api/v1/targets`` (each with ``discoveredLabels``)."""
        with urllib.request.urlopen(self.base + "/api/v1/targets", timeout=10) as resp:
            answer = json.loads(resp.read())
        assert answer["status"] == "success", answer
        return [
            target
            for target in answer["data"]["activeTargets"]
            if target["discoveredLabels"].get("job") == self.job
        ]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def running_prometheus(data_dir: Path, server: str, **kwargs: Any) -> Iterator[Prometheus]:
    prometheus = Prometheus(data_dir, server, **kwargs).start()
    try:
        yield prometheus
    finally:
        prometheus.stop()
