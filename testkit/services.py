"""Real external services for tests: a ``redis-server`` and a Celery worker on 127.0.0.1.

Both run as child processes, log to a file in their own directory, are waited for with a bound
(``start``) and are stopped by PID (``stop``: SIGTERM, then SIGKILL after a bound; idempotent).
``RedisServer.start()`` after ``stop()`` comes back on the same port, empty (no persistence), so
a test can take the broker away mid-run and give it back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from testkit.harness import ROOT, free_port, wait_for

if TYPE_CHECKING:
    import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_command(port: int, directory: Path) -> list[str]:
    """``redis-server`` on loopback, in the foreground, with no persistence (tests and
    ``tools/cluster.py`` run the same broker)."""
    return [
        REDIS_SERVER,
        "--save",
        "",
        "--appendonly",
        "no",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "no",
        "--dir",
        str(directory),
    ]


def celery_worker_command(
    python: str, hostname: str, concurrency: int = 2, pool: str = "threads"
) -> list[str]:
    """``celery -A server worker`` as the tests and ``tools/cluster.py`` run it."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "server",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "--hostname",
        hostname,
        # No peers to sync with at start-up: these only slow the start down.
        "--without-mingle",
        "--without-gossip",
    ]


def worker_ready(log_path: Path, offset: int) -> bool:
    """The worker logged " ready." after ``offset`` (where its log ended before it started)."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            return b" ready." in handle.read()
    except OSError:
        return False


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes] | None, term_s: float, sig: int) -> None:
    """Signal by PID, wait up to ``term_s``, then SIGKILL; nothing if it is already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(term_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence, its own working directory."""

    def __init__(self, base: Path, port: int | None = None) -> None:
        self.dir = base
        self.port = port or free_port()
        self.log_path = base / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=1
        )

    def start(self, deadline_s: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        # The old process may have left the port in TIME_WAIT; redis sets SO_REUSEADDR.
        self.proc = subprocess.Popen(
            redis_command(self.port, self.dir),
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            client = self.client()
            try:
                return bool(client.ping())
            finally:
                client.close()

        try:
            wait_for(answers, deadline_s, interval_s=0.05, message=f"redis on {self.port}")
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self, deadline_s: float = 10.0) -> None:
        _stop_process(self.proc, deadline_s, signal.SIGTERM)

    def kill9(self) -> None:
        _stop_process(self.proc, 10, signal.SIGKILL)

    def queue_length(self, queue: str = "celery") -> int:
        client = self.client()
        try:
            return int(client.llen(queue))
        finally:
            client.close()


class CeleryWorker:
    """``celery -A server worker`` with the nodes' environment, logging to ``worker.log``.

    The thread pool: the task only does one HTTP request, so threads are enough, start in about
    a second (no child processes to fork and import Django into), and SIGTERM is one warm
    shutdown of one process. With ``acks_late`` a task the worker had not finished stays in
    Redis and is delivered again.
    """

    def __init__(
        self,
        base: Path,
        redis_url: str,
        cluster_secret: str,
        concurrency: int = 2,
        pool: str = "threads",
    ) -> None:
        self.dir = base
        self.log_path = base / "worker.log"
        self.name = f"naming-test-{secrets.token_hex(3)}@%h"
        self.env = {
            "NAMING_CLUSTER_SECRET": cluster_secret,
            "NAMING_REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "server.settings",
            "NAMING_DATA_DIR": str(base / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        self.concurrency = concurrency
        self.pool = pool
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return _tail(self.log_path)

    def start(self, deadline_s: float = 30.0) -> CeleryWorker:
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        self.proc = subprocess.Popen(
            celery_worker_command(sys.executable, self.name, self.concurrency, self.pool),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"celery worker exited with {self.proc.returncode}")
            return worker_ready(self.log_path, offset)

        try:
            wait_for(ready, deadline_s, interval_s=0.1, message="the celery worker to be ready")
        except AssertionError as exc:
            self.kill9()
            raise AssertionError(f"{exc}\n{self.log()}") from None
        return self

    def stop(self, deadline_s: float = 15.0) -> None:
        """Warm shutdown (SIGTERM: running tasks finish); SIGKILL after ``deadline_s``."""
        _stop_process(self.proc, deadline_s, signal.SIGTERM)

    def kill9(self) -> None:
        _stop_process(self.proc, 10, signal.SIGKILL)
