"""A small Python airlift discovery client that behaves like airlift's own (``io.airlift:
discovery``, which needs Maven and cannot run here; ``../shared/facades.md`` §2.2):

- :class:`Announcer` (``Announcer.java``): announces once at start, then again at 0.8 x the
  ``Cache-Control: max-age`` the server answered (10 s when it sends none); a failure (any
  non-2xx, a 4xx included, or no answer) is retried after a back-off of 1 ms doubling to 1 s
  (``ExponentialBackOff``); ``stop()`` sends the DELETE.
- :func:`lookup` (``HttpDiscoveryLookupClient``): ``GET /v1/service/{type}[/{pool}]``, 200 or
  304 when it sent the previous ``ETag`` back in a request header named ``ETag``; the answer's
  environment must be the client's and every id must be a UUID, else the lookup fails.

Thread: each :class:`Announcer` owns one daemon thread, started by ``start()`` and stopped by
``stop()``/``kill()`` (an Event, joined with a bound).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_AGE_S = 10.0  # the client's assumption when the server sends no Cache-Control
MIN_BACKOFF_S = 0.001
MAX_BACKOFF_S = 1.0
_MAX_AGE_RE = re.compile(r"max-age=(\d+)")


@dataclass
class Announcer:
    base: str  # the discovery URI (the facade's listener)
    node_id: str
    environment: str
    pool: str
    services: list[dict[str, Any]]  # {id, type, properties}
    location: str | None = None
    timeout_s: float = 5.0
    puts: int = 0  # answered 2xx
    failures: int = 0
    statuses: list[int] = field(default_factory=list)  # every answer's status, in order
    last_success: float | None = None  # monotonic time of the last 2xx PUT
    max_age_s: float | None = None  # as the server suggested last
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @staticmethod
    def service(kind: str, properties: dict[str, str]) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "type": kind, "properties": properties}

    def body(self) -> bytes:
        data: dict[str, Any] = {
            "environment": self.environment,
            "pool": self.pool,
            "services": self.services,
            "nodeId": self.node_id,  # the Java client sends it; the server uses the path
        }
        if self.location is not None:
            data["location"] = self.location
        return json.dumps(data).encode()

    def announce(self) -> int:
        """One PUT; its status (0: no answer)."""
        request = urllib.request.Request(
            f"{self.base}/v1/announcement/{self.node_id}",
            data=self.body(),
            method="PUT",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": self.node_id},
        )
        status, cache_control = 0, ""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                status, cache_control = answer.status, answer.headers.get("Cache-Control", "")
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        self.statuses.append(status)
        if 200 <= status < 300:
            self.puts += 1
            self.last_success = time.monotonic()
            found = _MAX_AGE_RE.search(cache_control or "")
            self.max_age_s = float(found.group(1)) if found and int(found.group(1)) > 0 else None
        else:
            self.failures += 1
        return status

    def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        while not self._stop.is_set():
            if 200 <= self.announce() < 300:
                backoff = MIN_BACKOFF_S
                delay = 0.8 * (self.max_age_s or DEFAULT_MAX_AGE_S)
            else:
                delay = backoff
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._stop.wait(delay)

    def start(self) -> Announcer:
        self._thread = threading.Thread(target=self._run, name=f"announcer-{self.node_id}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop announcing without the DELETE (a crashed node)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 2)

    def stop(self) -> int:
        """Stop announcing and withdraw the node (airlift's shutdown); the DELETE's status."""
        self.kill()
        request = urllib.request.Request(
            f"{self.base}/v1/announcement/{self.node_id}", method="DELETE"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@dataclass(frozen=True)
class Lookup:
    status: int  # 200 or 304
    services: list[dict[str, Any]]  # empty on a 304: the caller keeps its last list
    etag: str | None
    max_age_s: float | None


class LookupFailed(AssertionError):
    pass


def lookup(
    base: str, environment: str, kind: str, pool: str | None = None, etag: str | None = None
) -> Lookup:
    path = f"/v1/service/{kind}" + (f"/{pool}" if pool else "")
    headers = {"Accept": "application/json"}
    if etag is not None:
        headers["ETag"] = etag
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            status, body, got = answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as exc:
        if exc.code != 304 or etag is None:
            raise LookupFailed(f"lookup of {path} answered {exc.code}") from None
        status, body, got = 304, b"", exc.headers
    found = _MAX_AGE_RE.search(got.get("Cache-Control", "") or "")
    max_age = float(found.group(1)) if found else None
    if status == 304:
        return Lookup(304, [], got.get("ETag") or etag, max_age)
    if status != 200:
        raise LookupFailed(f"lookup of {path} answered {status}")
    data = json.loads(body)
    if data.get("environment") != environment:
        raise LookupFailed(f"expected environment {environment}, got {data.get('environment')}")
    for item in data["services"]:
        uuid.UUID(item["id"])  # java.util.UUID: anything else fails the whole lookup
    return Lookup(200, list(data["services"]), got.get("ETag"), max_age)
