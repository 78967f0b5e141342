"""The Django-free WSGI application every candidate of ``bench/serving.py`` serves.

Routes (every response sets Content-Length, so every candidate keeps the connection alive):

- ``/empty``: a fixed 2-byte body, the server's own floor;
- ``/work``: about 50 µs of pure-Python CPU (holding the GIL), standing for the in-process cost
  of a beat; the loop's iteration count is calibrated once by the bench and passed in
  ``SERVING_BENCH_SPINS`` so every candidate runs the same work;
- ``/slow``: sleeps 200 ms (releasing the GIL), standing for a Raft commit or a forward;
- ``/pid``: the process that ran the application, to show where the app lives (granian runs it
  in a child process of the one started).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

SPINS_ENV = "SERVING_BENCH_SPINS"
WORK_S = 50e-6
SLOW_S = 0.2


def spin(iterations: int) -> int:
    """Pure-Python CPU work: a loop that cannot be optimised away (its sum is returned)."""
    total = 0
    for i in range(iterations):
        total += i ^ (total & 0xFF)
    return total


def calibrate(target_s: float = WORK_S, trials: int = 7) -> int:
    """Iterations of :func:`spin` that take about ``target_s`` on this box (the fastest of a few
    timed runs, so a busy moment during calibration does not shrink the work)."""
    probe = 20_000
    best = float("inf")
    for _ in range(trials):
        started = time.perf_counter()
        spin(probe)
        best = min(best, time.perf_counter() - started)
    return max(1, round(probe * target_s / best))


_SPINS = int(os.environ.get(SPINS_ENV, "0")) or calibrate()
_OK = b"ok"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/empty":
        body = _OK
    elif path == "/work":
        spin(_SPINS)
        body = _OK
    elif path == "/slow":
        time.sleep(SLOW_S)
        body = _OK
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"not found"
        start_response("404 Not Found", [("Content-Length", str(len(body)))])
        return [body]
    if len(body) == 2:
        start_response("200 OK", _HEADERS)
    else:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
    return [body]
