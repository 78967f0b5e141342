"""``python3 dev.py bench-capacity``: instances beating at the Nacos pace for minutes (issue #11).

Starts one node (auth on, as shipped), registers ``--instances`` ephemeral instances (default
20,000) in ``--services`` services, then keeps every one beating every ``--interval`` seconds
(default 5, the Nacos client's) for ``--duration`` seconds (default 120).

The load is open-loop: beat slot ``j`` belongs to instance ``j mod N`` and is due at
``start + j * interval / N``, so each instance beats on its own schedule and the beats are spread
evenly over the interval (wrk cannot pace; Debian has no wrk2). A small asyncio client in this
process sends them over ``--connections`` keep-alive connections, one request at a time each,
with hand-built HTTP/1.1 requests (the beat JSON in the query, as the Python SDK sends it). A beat
sent more than ``--late-ms`` after it was due means this generator fell behind (every connection
was still waiting for an answer): it is counted, not hidden.

Records, over the steady state (the first ``--warmup`` seconds of beating left out): the node's
CPU (utime + stime from ``/proc/<pid>/stat`` every second, as % of one core, median and max, and
per answered beat in µs), this generator's own CPU, beat latency from send to answer (p50, p99,
max), beats due / sent / answered / late / failed, the node's RSS, the expiry counters
(``health.expiredUnhealthy`` / ``expiredRemoved`` of operator/metrics) and, at the end, every
service listed with ``healthyOnly=false``: instances listed unhealthy or missing although they
kept beating (target: none). Results: ``bench/results/capacity.json``, one entry per instance
count (``--instances 10000`` is the issue's "10,000 beating instances on half a core").

``--generator-only`` runs the same beat schedule against a stub server (a child process answering
every request with a canned beat answer) instead of a node: what this generator costs at the
full pace, and whether it keeps it on this box (``generator_only_<N>`` in the same file).

Bounded: the beat schedule ends after ``--duration``; a request unanswered for ``--timeout``
seconds is aborted and counted as an error; the node is stopped by its PID in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.distro import percentile  # noqa: E402
from bench.run import bench_env, caller_token, cpu_seconds_of, rss_kb  # noqa: E402
from testkit.harness import NodeProcess, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "capacity.json"
GROUP = "DEFAULT_GROUP@@"
BEAT_OK = b'"code":10200'
BEAT_NOT_FOUND = b'"code":20404'

# The targets.
CPU_PER_BEAT_US = 200.0
CORE_SHARE_AT_10K = 40.0  # % of one core for 10,000 instances beating every 5 s
P99_MS = 50.0


# -- pure parts (tests/unit/test_bench_capacity.py) ------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The open-loop beat schedule: slot ``j`` is instance ``j % instances``, due at
    ``start + j * step``. Consecutive slots are ``interval / instances`` apart, so every instance
    beats exactly every ``interval`` and the load is flat over the interval."""

    start: float
    interval: float
    instances: int

    @property
    def step(self) -> float:
        return self.interval / self.instances

    def instance(self, slot: int) -> int:
        return slot % self.instances

    def due(self, slot: int) -> float:
        return self.start + slot * self.step

    def slots_before(self, t: float) -> int:
        """How many slots are due strictly before ``t`` (the slot count of a run ending at t)."""
        if t <= self.start:
            return 0
        n = int((t - self.start) / self.step)
        while self.due(n) < t:  # float rounding either way
            n += 1
        while n > 0 and self.due(n - 1) >= t:
            n -= 1
        return n


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max of durations in seconds, in milliseconds (nearest rank)."""
    if not seconds:
        return {"count": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def cpu_percentages(samples: Sequence[tuple[float, float]]) -> list[float]:
    """Per-interval CPU as % of one core from (wall seconds, CPU seconds) samples."""
    return [
        100.0 * (c1 - c0) / (t1 - t0)
        for (t0, c0), (t1, c1) in itertools.pairwise(samples)
        if t1 > t0
    ]


def parse_response(buffer: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes consumed) of the first complete HTTP/1.1 response in ``buffer``,
    or None while it is incomplete. Content-Length or chunked bodies (whichever server runs)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        if b"\r\ntransfer-encoding: chunked" in head:
            return _chunked(buffer, status, end + 4)
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
    total = end + 4 + length
    if len(buffer) < total:
        return None
    return status, bytes(buffer[end + 4 : total]), total


def _chunked(buffer: bytes | bytearray, status: int, at: int) -> tuple[int, bytes, int] | None:
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        start = line_end + 2
        if size == 0:  # no trailers from the servers this talks to
            return (status, bytes(body), start + 2) if len(buffer) >= start + 2 else None
        if len(buffer) < start + size + 2:
            return None
        body += buffer[start : start + size]
        at = start + size + 2


def instance_ip(i: int) -> str:
    return f"10.{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def build_request(method: str, path: str, params: dict[str, str], host: str) -> bytes:
    query = urllib.parse.urlencode(params, safe="@")
    return (
        f"{method} {path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def beat_request(i: int, services: int, token: str, host: str) -> bytes:
    service = f"{GROUP}cap-{i % services}"
    beat = json.dumps(
        {
            "cluster": "DEFAULT",
            "ip": instance_ip(i),
            "metadata": {},
            "port": 8080,
            "scheduled": True,
            "serviceName": service,
            "weight": 1.0,
        },
        separators=(",", ":"),
    )
    params = {"serviceName": service, "beat": beat, "accessToken": token}
    return build_request("PUT", "/nacos/v1/ns/instance/beat", params, host)


def register_request(i: int, services: int, token: str, host: str) -> bytes:
    params = {
        "serviceName": f"cap-{i % services}",
        "ip": instance_ip(i),
        "port": "8080",
        "ephemeral": "true",
        "accessToken": token,
    }
    return build_request("POST", "/nacos/v1/ns/instance", params, host)


# -- the client --------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time.

    Times here and below are ``time.perf_counter()``: uvloop's ``loop.time()`` counts whole
    milliseconds, too coarse for beat latencies of a few ms."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = parse_response(self.buffer)
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if parsed is not None:
            status, body, consumed = parsed
            del self.buffer[:consumed]
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.waiter = self.loop.create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(data)
        return self.waiter

    def abort_if_older(self, now: float, timeout: float) -> None:
        """The watchdog: abort a request unanswered for ``timeout`` seconds."""
        waiter = self.waiter
        stuck = waiter is not None and not waiter.done() and now - self.sent_at > timeout
        if stuck and self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(loop), host, port)
    return conn


@dataclass
class Tally:
    """What the beat workers saw; latencies only for beats due in the steady state."""

    steady_from: float
    sent: int = 0
    unsent: int = 0
    answered: int = 0
    not_found: int = 0
    errors: int = 0
    late: int = 0
    steady_sent: int = 0
    steady_answered: int = 0
    steady_late: int = 0
    max_lag: float = 0.0
    latencies: list[float] = field(default_factory=list)
    from_due: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what[:300])


class Pool:
    """``size`` connections, one worker each; a worker reconnects after a failure."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self.conns: list[Connection | None] = [None] * size

    async def open(self) -> None:
        for k in range(len(self.conns)):
            self.conns[k] = await connect(self.host, self.port)

    async def call(self, k: int, data: bytes) -> tuple[int, bytes]:
        conn = self.conns[k]
        if conn is None or conn.transport is None:
            conn = self.conns[k] = await connect(self.host, self.port)
        try:
            return await conn.request(data)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            self.conns[k] = None
            raise

    def watchdog(self, timeout: float) -> None:
        now = time.perf_counter()
        for conn in self.conns:
            if conn is not None:
                conn.abort_if_older(now, timeout)

    def close(self) -> None:
        for conn in self.conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()


async def register_all(pool: Pool, requests: Sequence[bytes]) -> None:
    """Register every instance, as fast as the pool goes (closed loop: one per connection)."""
    next_index = 0

    async def worker(k: int) -> None:
        nonlocal next_index
        while next_index < len(requests):
            i = next_index
            next_index += 1
            for attempt in range(3):
                try:
                    status, body = await pool.call(k, requests[i])
                except (ConnectionError, OSError):
                    if attempt == 2:
                        raise
                    continue
                if status == 200 and body == b"ok":
                    break
                raise RuntimeError(f"register {i} failed: {status} {body[:200]!r}")

    await asyncio.gather(*(worker(k) for k in range(len(pool.conns))))


async def beat_all(
    pool: Pool,
    requests: Sequence[bytes],
    schedule: Schedule,
    slots: int,
    late_s: float,
    give_up_at: float,
    tally: Tally,
) -> None:
    """Send every slot below ``slots`` at its due time, or as soon as a connection is free
    when all were busy; slots still unsent at ``give_up_at`` are counted, not sent."""
    next_slot = 0

    async def worker(k: int) -> None:
        nonlocal next_slot
        while next_slot < slots:
            if time.perf_counter() > give_up_at:
                tally.unsent += slots - next_slot
                next_slot = slots
                return
            slot = next_slot
            next_slot += 1
            due = schedule.due(slot)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            lag = sent - due
            steady = due >= tally.steady_from
            tally.sent += 1
            tally.steady_sent += steady
            if lag > late_s:
                tally.late += 1
                tally.steady_late += steady
            tally.max_lag = max(tally.max_lag, lag)
            try:
                status, body = await pool.call(k, requests[schedule.instance(slot)])
            except (ConnectionError, OSError, ValueError) as exc:
                tally.error(f"slot {slot}: {exc!r}")
                continue
            if status == 200 and BEAT_OK in body:
                answered = time.perf_counter()
                tally.answered += 1
                if steady:
                    tally.steady_answered += 1
                    tally.latencies.append(answered - sent)
                    tally.from_due.append(answered - due)
            elif status == 200 and BEAT_NOT_FOUND in body:
                tally.not_found += 1
            else:
                tally.error(f"slot {slot}: {status} {body[:200]!r}")

    await asyncio.gather(*(worker(k) for k in range(len(pool.conns))))


async def idle_cpu_pct(pid: int, seconds: float) -> float:
    """The node's CPU with nothing to serve (its own loops), before anything registers."""
    t0, c0 = time.perf_counter(), cpu_seconds_of(pid)
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds_of(pid) - c0) / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Sample:
    """Taken at ``origin + tick`` seconds (or a little after, when the loop was busy)."""

    tick: int
    t: float
    node_cpu: float
    own_cpu: float
    answered: int


def window_figures(samples: Sequence[Sample], first_tick: int, last_tick: int) -> dict[str, float]:
    """Node and generator CPU over the samples from ``first_tick`` to ``last_tick``: per second
    (% of one core: median, max, mean) and per beat answered in between (µs)."""
    inside = [s for s in samples if first_tick <= s.tick <= last_tick]
    if len(inside) < 2:
        raise ValueError(f"only {len(inside)} CPU samples in the steady state")
    a, b = inside[0], inside[-1]
    span, beats = b.t - a.t, max(b.answered - a.answered, 1)
    node = cpu_percentages([(s.t, s.node_cpu) for s in inside])
    own = cpu_percentages([(s.t, s.own_cpu) for s in inside])
    return {
        "seconds": span,
        "beats": b.answered - a.answered,
        "node_median_pct": statistics.median(node),
        "node_max_pct": max(node),
        "node_mean_pct": 100 * (b.node_cpu - a.node_cpu) / span,
        "node_per_beat_us": (b.node_cpu - a.node_cpu) / beats * 1e6,
        "own_median_pct": statistics.median(own),
        "own_max_pct": max(own),
        "own_per_beat_us": (b.own_cpu - a.own_cpu) / beats * 1e6,
    }


class Sampler:
    """Once a second on the tick (``origin + k``): the node's and this process's CPU seconds and
    the beats answered so far; then the watchdog. Runs until cancelled."""

    def __init__(
        self, origin: float, node_cpu: Callable[[], float], pool: Pool, tally: Tally, timeout: float
    ) -> None:
        self.origin = origin
        self.node_cpu = node_cpu
        self.pool = pool
        self.tally = tally
        self.timeout = timeout
        self.samples: list[Sample] = []

    async def run(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(max(0.0, self.origin + tick - time.perf_counter()))
            now = time.perf_counter()
            self.samples.append(
                Sample(tick, now, self.node_cpu(), time.process_time(), self.tally.answered)
            )
            self.pool.watchdog(self.timeout)
            tick = max(tick + 1, math.ceil(now - self.origin))  # skip ticks a stall missed


async def get_json(pool: Pool, k: int, path: str, params: dict[str, str], host: str) -> Any:
    status, body = await pool.call(k, build_request("GET", path, params, host))
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return json.loads(body)


async def expiry_counters(pool: Pool, k: int, host: str) -> dict[str, int]:
    metrics = await get_json(pool, k, "/nacos/v1/ns/operator/metrics", {}, host)
    return {
        "expired_unhealthy": int(metrics["health"]["expiredUnhealthy"]),
        "expired_removed": int(metrics["health"]["expiredRemoved"]),
        "instance_count": int(metrics["instanceCount"]),
    }


async def listed_state(
    pool: Pool, k: int, host: str, token: str, instances: int, services: int
) -> dict[str, int]:
    """Every service listed with healthyOnly=false: instances unhealthy or missing."""
    unhealthy = missing = listed = 0
    for s in range(services):
        view = await get_json(
            pool,
            k,
            "/nacos/v1/ns/instance/list",
            {"serviceName": f"cap-{s}", "healthyOnly": "false", "accessToken": token},
            host,
        )
        hosts = {h["ip"]: bool(h["healthy"]) for h in view["hosts"]}
        listed += len(hosts)
        for i in range(s, instances, services):
            healthy = hosts.get(instance_ip(i))
            if healthy is None:
                missing += 1
            elif not healthy:
                unhealthy += 1
    return {"listed": listed, "unhealthy": unhealthy, "missing": missing}


@dataclass
class BeatRun:
    """One beat phase: the schedule, what the workers saw and the CPU samples."""

    args: argparse.Namespace
    schedule: Schedule
    slots: int
    tally: Tally
    sampler: Sampler
    finished: float

    @property
    def end(self) -> float:
        return float(self.schedule.start + self.args.duration)


async def run_beats(
    pool: Pool,
    requests: Sequence[bytes],
    start: float,
    args: argparse.Namespace,
    target_cpu: Callable[[], float],
) -> BeatRun:
    schedule = Schedule(start, args.interval, len(requests))
    end = start + args.duration
    slots = schedule.slots_before(end)
    tally = Tally(steady_from=start + args.warmup)
    sampler = Sampler(start, target_cpu, pool, tally, args.timeout)
    sampling = asyncio.ensure_future(sampler.run())
    late_s, give_up_at = args.late_ms / 1000, end + args.grace
    try:
        await beat_all(pool, requests, schedule, slots, late_s, give_up_at, tally)
    finally:
        sampling.cancel()
    return BeatRun(args, schedule, slots, tally, sampler, time.perf_counter())


def beat_figures(run: BeatRun) -> dict[str, Any]:
    """The beats, their latency and the CPU figures of the steady state."""
    args, tally = run.args, run.tally
    steady = window_figures(run.sampler.samples, math.ceil(args.warmup), math.floor(args.duration))
    return {
        "instances": run.schedule.instances,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "loop": type(asyncio.get_running_loop()).__module__,
        "beats": {
            "due": run.slots,
            "sent": tally.sent,
            "answered": tally.answered,
            "not_found": tally.not_found,
            "errors": tally.errors,
            "late": tally.late,
            "unsent": tally.unsent,
            "steady_due": run.slots - run.schedule.slots_before(tally.steady_from),
            "steady_answered": tally.steady_answered,
            "steady_late": tally.steady_late,
            "steady_rate_per_s": round(steady["beats"] / steady["seconds"], 1),
            "finished_after_schedule_s": round(run.finished - run.end, 3),
            "max_lag_ms": round(tally.max_lag * 1000, 1),
            "error_samples": tally.error_samples,
        },
        "latency": summarize_ms(tally.latencies),
        "latency_from_due": summarize_ms(tally.from_due),
        "steady": steady,
        "generator_cpu": {
            "median_pct": steady["own_median_pct"],
            "max_pct": steady["own_max_pct"],
            "per_beat_us": steady["own_per_beat_us"],
        },
    }


async def drive(node: NodeProcess, token: str, args: argparse.Namespace) -> dict[str, Any]:
    assert node.proc is not None
    pid = node.proc.pid
    host = node.address
    n, services = args.instances, args.services
    pool = Pool(node.host, node.port, args.connections)
    control = Pool(node.host, node.port, 1)  # metrics and lists, beside the load
    await pool.open()
    await control.open()
    rss_start = rss_kb(pid)
    idle = await idle_cpu_pct(pid, args.idle)

    registers = [register_request(i, services, token, host) for i in range(n)]
    beats = [beat_request(i, services, token, host) for i in range(n)]
    started = time.perf_counter()
    await register_all(pool, registers)
    register_s = time.perf_counter() - started
    print(f"registered {n} instances in {services} services in {register_s:.1f} s", flush=True)
    before = await expiry_counters(control, 0, host)

    start = time.perf_counter() + 0.2

    async def at_steady_start() -> dict[str, int]:
        await asyncio.sleep(max(0.0, start + args.warmup - time.perf_counter()))
        return await expiry_counters(control, 0, host)

    steady_counters = asyncio.ensure_future(at_steady_start())
    run = await run_beats(pool, beats, start, args, lambda: cpu_seconds_of(pid))
    after = await expiry_counters(control, 0, host)
    listed = await listed_state(control, 0, host, token, n, services)
    at_steady = await steady_counters
    rss_end = rss_kb(pid)
    pool.close()
    control.close()

    figures = beat_figures(run)
    steady = figures["steady"]
    idle_s = idle / 100 * steady["seconds"]
    net_per_beat_us = steady["node_per_beat_us"] - idle_s / max(steady["beats"], 1) * 1e6
    expired = {k: after[k] - at_steady[k] for k in ("expired_unhealthy", "expired_removed")}
    return {
        **figures,
        "services": services,
        "caller": args.caller,
        "register_seconds": round(register_s, 2),
        "node_cpu": {
            "median_pct": steady["node_median_pct"],
            "max_pct": steady["node_max_pct"],
            "mean_pct": steady["node_mean_pct"],
            "idle_pct": idle,
            "per_beat_us": steady["node_per_beat_us"],
            "net_of_idle_per_beat_us": net_per_beat_us,
            "at_10k_every_5s_pct": steady["node_per_beat_us"] * 2000 / 1e4,
            "window_s": steady["seconds"],
        },
        "rss_kb": {"start": rss_start, "end": rss_end},
        "expiry": {
            "before_beats": before,
            "steady_start": at_steady,
            "end": after,
            "steady_delta": expired,
        },
        "listed_at_end": listed,
    }


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each of the issue's targets this run shows."""
    cpu = r["node_cpu"]
    beats = r["beats"]
    listed = r["listed_at_end"]
    at_end = listed["unhealthy"] + listed["missing"]
    expired = r["expiry"]["steady_delta"]
    expiries = expired["expired_unhealthy"] + expired["expired_removed"] + beats["not_found"]
    rows = [
        (
            f"server CPU per beat <= {CPU_PER_BEAT_US:.0f} us",
            f"{cpu['per_beat_us']:.0f} us",
            cpu["per_beat_us"] <= CPU_PER_BEAT_US,
        ),
        (
            f"10,000 instances every 5 s <= {CORE_SHARE_AT_10K:.0f} % of a core (from per beat)",
            f"{cpu['at_10k_every_5s_pct']:.1f} %",
            cpu["at_10k_every_5s_pct"] <= CORE_SHARE_AT_10K,
        ),
        (
            f"beat p99 <= {P99_MS:.0f} ms",
            f"{r['latency']['p99_ms']:.1f} ms",
            r["latency"]["p99_ms"] <= P99_MS,
        ),
        (
            "zero instances listed unhealthy or missing at the end",
            f"{listed['unhealthy']} unhealthy, {listed['missing']} missing",
            at_end == 0,
        ),
        (
            "zero expiries while beating (steady state; beats answered 'not found' included)",
            str(expiries),
            expiries == 0,
        ),
        (
            "every beat sent on time (none late in the steady state)",
            f"{beats['steady_late']} late, {beats['unsent']} never sent",
            beats["steady_late"] == 0 and beats["unsent"] == 0,
        ),
    ]
    if r["instances"] == 10_000 and r["interval_s"] == 5:
        rows.insert(
            2,
            (
                f"measured: 10,000 instances <= {CORE_SHARE_AT_10K:.0f} % of a core (median)",
                f"{cpu['median_pct']:.1f} %",
                cpu["median_pct"] <= CORE_SHARE_AT_10K,
            ),
        )
    return rows


def report(r: dict[str, Any]) -> None:
    b, lat, due = r["beats"], r["latency"], r["latency_from_due"]
    cpu, gen = r["node_cpu"], r["generator_cpu"]
    print(
        f"\n{r['instances']} instances in {r['services']} services, a beat every "
        f"{r['interval_s']} s for {r['duration_s']} s ({r['warmup_s']} s warm-up left out), "
        f"{r['connections']} connections, {r['loop']} loop"
    )
    print(
        f"beats: due {b['due']}, sent {b['sent']}, answered {b['answered']}, "
        f"not found {b['not_found']}, errors {b['errors']}, late {b['late']}, "
        f"unsent {b['unsent']} (max lag {b['max_lag_ms']:.0f} ms); "
        f"steady state {b['steady_rate_per_s']:.0f} answered/s"
    )
    print(
        f"latency (send -> answer): p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
        f"max {lat['max_ms']:.1f} ms; from the due time: p50 {due['p50_ms']:.1f} ms, "
        f"p99 {due['p99_ms']:.1f} ms"
    )
    print(
        f"node CPU: median {cpu['median_pct']:.1f} %, max {cpu['max_pct']:.1f} % of a core, "
        f"{cpu['per_beat_us']:.0f} us per beat ({cpu['net_of_idle_per_beat_us']:.0f} us net of "
        f"its idle {cpu['idle_pct']:.1f} %); RSS {r['rss_kb']['start'] // 1024} -> "
        f"{r['rss_kb']['end'] // 1024} MB"
    )
    print(
        f"generator CPU: median {gen['median_pct']:.1f} % of a core, "
        f"{gen['per_beat_us']:.0f} us per beat"
    )
    e, listed = r["expiry"]["steady_delta"], r["listed_at_end"]
    print(
        f"expired in the steady state: {e['expired_unhealthy']} unhealthy, "
        f"{e['expired_removed']} removed; listed at the end: {listed['listed']} "
        f"({listed['unhealthy']} unhealthy, {listed['missing']} missing)"
    )
    if b["steady_late"] or b["unsent"]:
        # Slots are taken in order by whichever connection is free: a late beat means every
        # connection was still waiting for an answer, or this process was starved of CPU.
        bound = "the node" if gen["max_pct"] < 50 else "the node or this generator"
        print(
            f"behind the schedule: {r['instances'] / r['interval_s']:.0f} beats/s due, "
            f"{b['steady_rate_per_s']:.0f}/s answered with all {r['connections']} connections "
            f"busy; bound by {bound}"
        )
    print("\ntargets (issue #11):")
    for target, measured, met in verdicts(r):
        print(f"  {'met   ' if met else 'MISSED'} {target}: {measured}")


# -- the generator alone (--generator-only) ----------------------------------------------------

STUB_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
    b'{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}'
)


class StubServer(asyncio.Protocol):
    """Answers every request with a canned beat answer: the generator's requests have no body,
    so each ``CRLF CRLF`` ends one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        data = self.rest + data
        count = data.count(b"\r\n\r\n")
        self.rest = data[data.rfind(b"\r\n\r\n") + 4 :] if count else data
        if count and self.transport is not None:
            self.transport.write(STUB_ANSWER * count)


async def serve_stub(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(StubServer, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def drive_generator(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The beat phase alone against the stub: what the generator costs at the full pace."""
    pool = Pool("127.0.0.1", port, args.connections)
    await pool.open()
    host = f"127.0.0.1:{port}"
    beats = [beat_request(i, args.services, "x" * 150, host) for i in range(args.instances)]
    start = time.perf_counter() + 0.2
    run = await run_beats(pool, beats, start, args, lambda: cpu_seconds_of(pid))
    pool.close()
    figures = beat_figures(run)
    figures["stub_cpu_median_pct"] = figures["steady"]["node_median_pct"]
    return figures


def generator_only(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, __file__, "--serve-stub", str(port), "--loop", args.loop],
        stdout=subprocess.PIPE,
    )
    try:
        assert stub.stdout is not None and stub.stdout.readline().strip() == b"ready"
        return event_loop_runner(args.loop)(drive_generator(port, stub.pid, args))
    finally:
        stub.kill()
        stub.wait(10)


def report_generator(r: dict[str, Any]) -> None:
    b, lat, gen = r["beats"], r["latency"], r["generator_cpu"]
    print(
        f"\ngenerator alone against a stub server: {r['instances']} instances every "
        f"{r['interval_s']} s, {r['connections']} connections, {r['loop']} loop"
    )
    print(
        f"beats: due {b['due']}, answered {b['answered']}, late {b['late']}, unsent "
        f"{b['unsent']} (max lag {b['max_lag_ms']:.0f} ms); steady state "
        f"{b['steady_rate_per_s']:.0f}/s; latency p50 {lat['p50_ms']:.2f} ms, "
        f"p99 {lat['p99_ms']:.2f} ms"
    )
    print(
        f"generator CPU: median {gen['median_pct']:.1f} %, max {gen['max_pct']:.1f} % of a core, "
        f"{gen['per_beat_us']:.0f} us per beat (stub {r['stub_cpu_median_pct']:.1f} %)"
    )


def save(r: dict[str, Any], prefix: str = "instances") -> None:
    """One entry per instance count in ``capacity.json``, so the 20,000 and 10,000 runs sit
    side by side."""
    RESULTS.parent.mkdir(exist_ok=True)
    try:
        saved = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[f"{prefix}_{r['instances']}"] = {"taken": time.strftime("%Y-%m-%d %H:%M"), **r}
    RESULTS.write_text(json.dumps(saved, indent=2))


T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, main: Coroutine[Any, Any, T], /) -> T: ...


def event_loop_runner(name: str) -> Runner:
    """uvloop when it is installed (``auto``): the generator then costs less CPU per beat. It is
    looked up by name because it is not a requirement of the node."""
    if name in ("uvloop", "auto"):
        try:
            return cast(Runner, importlib.import_module("uvloop").run)
        except ImportError:
            if name == "uvloop":
                raise
    return asyncio.run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=20_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between beats")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of beating")
    parser.add_argument("--warmup", type=float, default=None, help="default: one interval")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--late-ms", type=float, default=1000.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument(
        "--grace", type=float, default=None, help="seconds past the schedule to catch up"
    )
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU baseline")
    parser.add_argument("--caller", choices=("user", "admin"), default="user")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument(
        "--generator-only",
        action="store_true",
        help="beat a stub server instead of a node: what the generator itself costs",
    )
    parser.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub is not None:
        try:
            event_loop_runner(args.loop)(serve_stub(args.serve_stub))
        except KeyboardInterrupt:
            pass
        return 0
    if args.warmup is None:
        args.warmup = args.interval
    if args.grace is None:
        args.grace = args.interval
    if not 0 <= args.warmup < args.duration:
        parser.error("--warmup must be shorter than --duration")
    if args.generator_only:
        result = generator_only(args)
        report_generator(result)
        save(result, "generator_only")
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="naming-capacity-"))
    node = NodeProcess(data_dir, env=bench_env()).start()
    try:
        token = caller_token(node, args.caller)
        result = event_loop_runner(args.loop)(drive(node, token, args))
    finally:
        node.stop()
        node.kill9()
        shutil.rmtree(data_dir, ignore_errors=True)
    report(result)
    save(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
