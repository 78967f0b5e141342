"""``asyncio.run`` on a thread of its own, for tests that drive a coroutine.

A session-wide playwright fixture keeps an event loop running on the test thread of the xdist
worker that ran the browser tests, and ``asyncio.run`` refuses to start there. The thread is
started and joined here (bounded); what the coroutine returns or raises comes back to the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_own_thread(make: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    outcome: list[tuple[bool, Any]] = []

    async def main() -> T:
        return await make()

    def target() -> None:
        try:
            outcome.append((True, asyncio.run(main())))
        except BaseException as exc:  # handed to the test thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="own-loop")
    thread.start()
    thread.join(timeout_s)
    assert outcome, f"the coroutine did not finish within {timeout_s:g} s"
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
