"""The real Nacos 2.x Python SDK (``v2.nacos``, gRPC) in a child process, for tests and tools.

Both SDK versions under test share one distribution name, so each lives in its own environment:
2.0.9 in ``.venv`` (requirements-dev.txt), 3.2.0 in ``.venv-sdk3`` (requirements-sdk3.txt, made by
``python3 dev.py test``). ``SdkClient`` starts ``testkit/nacos_sdk_driver.py`` with the chosen
interpreter and speaks its line protocol: one JSON command a line on stdin, one JSON reply a line
on stdout, plus unsolicited push events from subscribe callbacks.

Threads: each ``SdkClient`` owns one reader thread (named ``sdk-<version>-<pid>``) that parses the
child's stdout; it ends when the child's stdout closes, which ``close()`` and ``kill9()`` cause.
Every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "nacos_sdk_driver.py"
SDK_VERSIONS = ("2.0.9", "3.2.0")
INTERPRETERS = {
    "2.0.9": ROOT / ".venv" / "bin" / "python",
    "3.2.0": ROOT / ".venv-sdk3" / "bin" / "python",
}

Push = dict[str, Any]


class SdkError(AssertionError):
    """The driver answered ``ok: false``; ``error`` is ``"<type>: <message>"`` from the child."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


def interpreter(version: str) -> Path:
    """The Python that has nacos-sdk-python ``version``; fails with how to make it if missing."""
    if version not in INTERPRETERS:
        raise ValueError(f"unknown SDK version {version!r}; known: {', '.join(SDK_VERSIONS)}")
    path = INTERPRETERS[version]
    if not path.exists():
        raise AssertionError(
            f"{path} is missing: `python3 dev.py test` creates the nacos-sdk-python {version} "
            "environment (or run dev.py's ensure_sdk3_venv())"
        )
    return path


class SdkClient:
    """One SDK client process. ``call("start", server_addresses=[...])`` connects it.

    ``log_dir`` receives the child's stderr (``driver.log``) and the SDK's own logs
    (``naming.log``); it is a fresh temporary directory unless given, and is kept for debugging.
    """

    def __init__(
        self,
        version: str,
        log_dir: Path | None = None,
        default_timeout_s: float = 30.0,
    ) -> None:
        self.version = version
        self.default_timeout_s = default_timeout_s
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"nacos-sdk-{version}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / "driver.log"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            # The SDK writes under ~ when no directory is configured (and before it is told one).
            "HOME": str(self.log_dir),
        }
        env.pop("PYTHONPATH", None)  # the 3.2.0 environment must not see this repository
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(interpreter(version)), str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.log_dir,
                env=env,
            )
        self.pid = self.proc.pid
        self._next_id = 0
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pushes: list[Push] = []
        self._pushes_changed = threading.Condition()
        self._reader = threading.Thread(
            target=self._read, name=f"sdk-{version}-{self.pid}", daemon=True
        )
        self._reader.start()
        ready = self._reply(None, 60.0, "ready")
        if ready.get("event") != "ready":
            raise AssertionError(f"driver did not start: {ready}\n{self.log()}")

    # -- child output ---------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue  # nothing but the driver writes stdout; a stray line is not a reply
            if message.get("event") == "push":
                with self._pushes_changed:
                    self._pushes.append(message)
                    self._pushes_changed.notify_all()
            else:
                self._replies.put(message)
        self._replies.put({"event": "exit"})

    def _reply(self, request_id: int | None, timeout_s: float, command: str) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"SDK {self.version} gave no answer to {command} in {timeout_s}s\n{self.log()}"
                )
            try:
                message = self._replies.get(timeout=left)
            except queue.Empty:
                continue
            if message.get("event") == "exit":
                self._replies.put(message)  # later calls see the exit too
                raise AssertionError(
                    f"SDK {self.version} driver exited ({self.proc.poll()}) during {command}\n"
                    f"{self.log()}"
                )
            if request_id is None or message.get("id") == request_id:
                return message

    # -- commands -------------------------------------------------------------------------

    def call(self, command: str, timeout_s: float | None = None, **args: Any) -> Any:
        """Send one command, wait for its reply; the result, or ``SdkError`` on ``ok: false``.

        The child bounds the SDK call by ``timeout_s``; the parent waits 10 s longer.
        """
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps(
            {"id": request_id, "cmd": command, "args": {**args, "timeout_s": timeout}}
        )
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AssertionError(f"SDK {self.version} driver is gone: {exc}\n{self.log()}") from exc
        reply = self._reply(request_id, timeout + 10.0, command)
        if not reply.get("ok"):
            raise SdkError(command, str(reply.get("error")))
        return reply.get("result")

    def start(
        self,
        server_addresses: list[str],
        namespace: str = "",
        username: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Connect the SDK (``start``); its logs and cache go under ``log_dir``."""
        result = self.call(
            "start",
            server_addresses=server_addresses,
            namespace=namespace,
            username=username,
            password=password,
            log_dir=str(self.log_dir / "sdk-logs"),
            cache_dir=str(self.log_dir / "sdk-cache"),
            **options,
        )
        return dict(result)

    # -- pushes ---------------------------------------------------------------------------

    def pushes(self) -> list[Push]:
        with self._pushes_changed:
            return list(self._pushes)

    def wait_push(
        self, predicate: Callable[[Push], bool], timeout_s: float = 10.0, since: int = 0
    ) -> Push:
        """The first push (from index ``since`` of ``pushes()``) that satisfies ``predicate``."""
        end = time.monotonic() + timeout_s
        checked = since
        with self._pushes_changed:
            while True:
                for push in self._pushes[checked:]:
                    if predicate(push):
                        return push
                checked = max(checked, len(self._pushes))
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching push from SDK {self.version} in {timeout_s}s; "
                        f"got {self._pushes[since:]}"
                    )
                self._pushes_changed.wait(left)

    # -- life -----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL by PID: the SDK gets no chance to close its connection."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)

    def freeze(self) -> None:
        """SIGSTOP by PID: the connection stays open but the client answers nothing (a hung or
        partitioned client; only the server's client detection can notice)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self, timeout_s: float = 20.0) -> None:
        """Clean close: ``shutdown`` (the SDK closes its connection), then wait for the exit;
        SIGKILL by PID if it does not come."""
        if self.proc.poll() is None:
            self.thaw()  # a frozen child would never answer
            try:
                self.call("shutdown", timeout_s=timeout_s)
            except AssertionError:
                pass  # not started, or already broken: the exit below still happens
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()

    def log(self) -> str:
        parts = []
        for path in (self.log_path, self.log_dir / "sdk-logs" / "naming.log"):
            try:
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
            except OSError:
                pass
        return "\n".join(parts)

    def __enter__(self) -> SdkClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
