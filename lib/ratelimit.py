"""One rate limit for log lines that a flood or a failing loop could repeat without end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LogThrottle:
    """At most one line per ``interval_s`` (the first at once), counting the lines held back in
    between so the next line can say how many there were. Thread-safe."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._held = 0

    def admit(self) -> int | None:
        """None: hold this line back. Otherwise log it: the number held back since the last."""
        now = self._clock()
        with self._lock:
            if now - self._last < self._interval_s:
                self._held += 1
                return None
            held, self._held, self._last = self._held, 0, now
            return held
