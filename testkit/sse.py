"""An event stream of a node (``GET /nacos/v1/ns/events``) read with a real SSE client library
(httpx-sse) on a thread of its own, so a test can make changes while the stream is read.

httpx-sse hands a keep-alive comment (``: keep-alive`` and a blank line) over as an event with
empty data once an id has been seen; :class:`Reader` counts those apart and queues the rest.
The reader thread ends at the next event or keep-alive after the ``with`` block, or when the
node ends the stream.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from testkit.harness import NodeProcess

EVENTS = "/nacos/v1/ns/events"


@dataclass
class Reader:
    """An SSE stream read on a thread of its own (the writer must not wait on the reader)."""

    events: queue.Queue[ServerSentEvent] = field(default_factory=queue.Queue)
    keepalives: int = 0
    status: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def next(self, timeout: float = 30.0) -> ServerSentEvent:
        return self.events.get(timeout=timeout)

    def nothing_more(self, quiet_s: float = 1.0) -> None:
        """No further event for a while (an event no change made would show here)."""
        with pytest.raises(queue.Empty):
            extra = self.events.get(timeout=quiet_s)
            pytest.fail(f"an unexpected event: {extra}")

    def changes(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            found.append({"id": event.id, **json.loads(event.data)})
        return found


@contextmanager
def stream(
    node: NodeProcess, params: dict[str, Any], headers: dict[str, str] | None = None
) -> Iterator[Reader]:
    reader = Reader()
    opened = threading.Event()

    def run() -> None:
        try:
            read(dict(headers or {}))
        finally:
            opened.set()

    def read(sent: dict[str, str]) -> None:
        with httpx.Client(base_url=node.base, timeout=httpx.Timeout(30, read=None)) as client:
            query = {"accessToken": node.token(), **params}
            with connect_sse(client, "GET", EVENTS, params=query, headers=sent) as source:
                reader.status = source.response.status_code
                opened.set()
                if reader.status != 200:
                    return
                try:
                    for event in source.iter_sse():
                        if reader.stop.is_set():
                            return
                        if event.data == "":
                            reader.keepalives += 1
                            continue
                        reader.events.put(event)
                except httpx.HTTPError:
                    return  # the test hung up

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert opened.wait(30), "the stream did not open"
    try:
        yield reader
    finally:
        reader.stop.set()
