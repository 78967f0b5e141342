"""``python3 dev.py bench-serving`` (issue #11 item 2): the serving-stack candidates side by side.

Every candidate serves the same Django-free WSGI app (``bench/serving_app.py``: ``/empty``,
``/work`` ≈ 50 µs of pure-Python CPU, ``/slow`` sleeping 200 ms) as its own process on a free
loopback port, started here and stopped by PID:

- ``waitress``: ``waitress.serve``, 8 threads (the previous stack), poll() and a 10,000
  connection limit;
- ``granian_bt1`` / ``granian_bt8`` / ``granian_bt32``: granian's WSGI interface, 1 worker, 1,
  8 or 32 blocking threads (32: as many as our server's workers); granian runs the app in a
  child process of the one it starts;
- ``naming_loop``: our ``server.serving.NamingServer``, ``/empty`` and ``/work`` on the event
  loop, ``/slow`` on its 32 workers;
- ``naming_pool``: the same server with every route on the workers (the cost of a handoff).

Workloads, with ``wrk -t2`` for ``--seconds``, medians of ``--rounds`` interleaved rounds (the
candidate order rotates each round): ``/empty`` and ``/work`` at 16 and 64 connections, and
``mixed``: ``/work`` at 64 connections while a second wrk holds 16 connections on ``/slow``
(``/work``'s req/s and p99 while slow requests are in progress). The server's CPU per request is
utime + stime of the started process *and its children* over the run.

Then, per candidate: 5,000 idle keep-alive connections (each served one ``/empty`` first), the
process tree's threads and RSS before and after, whether the connections are still open, the
latency of 20 ``/empty`` requests on new connections meanwhile, and finally SIGTERM with those
connections open (exit code, seconds to exit, whether any process of the tree outlived it).

Results: printed tables and ``bench/results/serving.json``. Every loop here is bounded in count
and time; every process started here is stopped by its PID in ``finally``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import save_results, wrk  # noqa: E402
from bench.serving_app import SPINS_ENV, calibrate  # noqa: E402
from testkit.harness import free_port, wait_for  # noqa: E402

CANDIDATES = (
    "waitress",
    "granian_bt1",
    "granian_bt8",
    "granian_bt32",
    "naming_loop",
    "naming_pool",
)
# (workload, connections); "mixed" is /work at 64 with 16 more connections on /slow.
POINTS = (("empty", 16), ("empty", 64), ("work", 16), ("work", 64), ("mixed", 64))
SLOW_CONNECTIONS = 16
SLOW_LEAD_S = 1  # the slow wrk starts first, so slow requests are in progress throughout
WRK_TIMEOUT_S = 10  # a stalled request is latency here, not an error
IDLE_CONNECTIONS = 5000
IDLE_BATCH = 250
IDLE_OPEN_DEADLINE_S = 120.0
IDLE_MAX_FAILURES = 50
PROBES = 20
STOP_WAIT_S = 15.0
PY = ROOT / ".venv" / "bin" / "python"
GRANIAN = ROOT / ".venv" / "bin" / "granian"
REQUEST = b"GET /empty HTTP/1.1\r\nHost: bench\r\n\r\n"


# -- the process tree (/proc) --------------------------------------------------------------------


def parse_stat(text: str) -> tuple[int, int]:
    """``/proc/<pid>/stat`` as (parent pid, utime + stime in clock ticks). The command name may
    hold spaces and parentheses: fields are counted after its last ``)``."""
    fields = text.rpartition(")")[2].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def descendants(parents: dict[int, int], root: int) -> list[int]:
    """``root`` and every process below it, given each pid's parent (breadth first)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        if pid in tree:  # a pid reused mid-scan cannot loop us
            continue
        tree.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return tree


def _proc_parents() -> dict[int, int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = parse_stat(Path(entry.path, "stat").read_text())[0]
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
    return parents


def tree_of(root: int) -> list[int]:
    return descendants(_proc_parents(), root)


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its live descendants (granian's worker runs the app)."""
    ticks = 0
    for pid in tree_of(root):
        try:
            ticks += parse_stat(Path(f"/proc/{pid}/stat").read_text())[1]
        except OSError:
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def status_field(text: str, name: str) -> int:
    """An integer field of ``/proc/<pid>/status`` (``Threads``, ``VmRSS`` in kB)."""
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {name} in /proc status")


def tree_status(root: int) -> dict[str, int]:
    """Processes, threads and RSS (kB) summed over the tree of ``root``."""
    processes = threads = rss = 0
    for pid in tree_of(root):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        processes += 1
        threads += status_field(text, "Threads")
        rss += status_field(text, "VmRSS")
    return {"processes": processes, "threads": threads, "rss_kb": rss}


# -- candidates ----------------------------------------------------------------------------------


def command(name: str, port: int) -> list[str]:
    """The command line that starts candidate ``name`` on ``port``."""
    if name.startswith("granian_bt"):
        return [
            str(GRANIAN),
            "--interface", "wsgi",
            "--http", "1",
            "--no-ws",
            "--workers", "1",
            "--blocking-threads", name.removeprefix("granian_bt"),
            "--backlog", "2048",  # as our server's
            # Measured: the default (backlog / workers = 2048) stops accepting past 2048 open
            # connections; 10,000 is our server's connection limit.
            "--backpressure", "10000",
            # An idle keep-alive connection is closed after this (default 30 s; 60 s is the
            # most granian accepts), see ``--idle-hold``.
            "--http1-header-read-timeout", "60000",
            "--log-level", "warning",
            "--host", "127.0.0.1",
            "--port", str(port),
            "bench.serving_app:application",
        ]  # fmt: skip
    kind = {"waitress": "waitress", "naming_loop": "naming", "naming_pool": "naming-pool"}[name]
    return [str(PY), str(ROOT / "bench" / "serving_server.py"), kind, "--port", str(port)]


@dataclass
class Candidate:
    name: str
    log_dir: Path
    spins: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    stopped: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        path = self.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self) -> Candidate:
        self.port = free_port()
        env = {**os.environ, SPINS_ENV: str(self.spins), "PYTHONPATH": str(ROOT)}
        with open(self.log_dir / f"{self.name}.log", "wb") as out:
            self.proc = subprocess.Popen(
                command(self.name, self.port), cwd=ROOT, env=env, stdout=out, stderr=out
            )
        wait_for(
            lambda: self.proc is not None and self.proc.poll() is None and get_ok(self.port),
            30,
            interval_s=0.2,
            message=f"{self.name} to answer /empty",
        )
        return self

    def app_pid(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/pid")
            return int(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then wait; what happened is kept in :attr:`stopped` (once)."""
        if self.proc is None or self.stopped:
            return self.stopped
        tree = tree_of(self.pid)
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        left = [pid for pid in tree[1:] if Path(f"/proc/{pid}").exists()]
        self.stopped = {"exit_code": code, "seconds": round(took, 3), "left_running": len(left)}
        for pid in left if code is not None else tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if code is None:
            self.proc.wait(5)
        return self.stopped


def get_ok(port: int, timeout_s: float = 2.0) -> bool:
    """``GET /empty`` on a new connection answered 200 within ``timeout_s``."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        try:
            conn.request("GET", "/empty")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


# -- throughput ----------------------------------------------------------------------------------


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """``items`` starting one further each round: no candidate always runs first."""
    start = round_index % len(items)
    return [*items[start:], *items[:start]]


def measure(
    candidate: Candidate,
    workload: str,
    connections: int,
    seconds: int,
    slow_connections: int = SLOW_CONNECTIONS,
) -> dict[str, Any]:
    """One wrk run (two for ``mixed``) and the server tree's CPU over it."""
    path = "/work" if workload == "mixed" else f"/{workload}"
    url = candidate.base + path
    slow: dict[str, float] | None = None
    before = tree_cpu_seconds(candidate.pid)
    if workload == "mixed":
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                wrk,
                candidate.base + "/slow",
                seconds + SLOW_LEAD_S + 1,
                connections=slow_connections,
                timeout_s=WRK_TIMEOUT_S,
            )
            time.sleep(SLOW_LEAD_S)
            before = tree_cpu_seconds(candidate.pid)
            row = wrk(url, seconds, connections=connections, timeout_s=WRK_TIMEOUT_S)
            cpu = tree_cpu_seconds(candidate.pid) - before
            slow = pending.result()
    else:
        row = wrk(url, seconds, connections=connections, timeout_s=WRK_TIMEOUT_S)
        cpu = tree_cpu_seconds(candidate.pid) - before
    # Slow requests served during the /work run count in the CPU per request too.
    requests = row["requests"] + (slow["rps"] * row["seconds"] if slow else 0.0)
    # wrk prints 0 latencies when nothing completed: no latency, not a fast one.
    completed = row["requests"] > 0
    result: dict[str, Any] = {
        "rps": row["rps"],
        "p50_ms": row["p50_ms"] if completed else float("nan"),
        "p99_ms": row["p99_ms"] if completed else float("nan"),
        "errors": row["non2xx"] + row["socket_errors"],
        "cpu_us_per_req": cpu / requests * 1e6 if requests else float("nan"),
    }
    if slow is not None:
        result["slow_rps"] = slow["rps"]
        result["slow_p99_ms"] = slow["p99_ms"]
        result["errors"] += slow["non2xx"] + slow["socket_errors"]
    return result


def summarize(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median per (workload, connections, candidate) of the rounds' runs, in POINTS and
    CANDIDATES order; errors are summed, not medianed (one is one too many)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["workload"], run["connections"], run["candidate"]), []).append(run)
    table = []
    for (workload, connections, name), rows in sorted(
        groups.items(),
        key=lambda item: (POINTS.index(item[0][:2]), CANDIDATES.index(item[0][2])),
    ):
        row: dict[str, Any] = {
            "workload": workload,
            "connections": connections,
            "candidate": name,
            "rounds": len(rows),
        }
        for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "slow_rps", "slow_p99_ms"):
            values = [r[key] for r in rows if key in r]
            if values:
                row[key] = statistics.median(values)
        row["errors"] = sum(r["errors"] for r in rows)
        table.append(row)
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    lines = [
        f"{'workload':<8} {'conns':>5} {'candidate':<12} {'req/s':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'CPU us/req':>10} {'errors':>6} {'slow req/s':>10}"
    ]
    for row in table:
        slow = f"{row['slow_rps']:.0f}" if "slow_rps" in row else ""
        lines.append(
            f"{row['workload']:<8} {row['connections']:>5} {row['candidate']:<12} "
            f"{row['rps']:>7.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['cpu_us_per_req']:>10.0f} {row['errors']:>6.0f} {slow:>10}"
        )
    return "\n".join(lines)


# -- idle connections ----------------------------------------------------------------------------


def answered(buffer: bytes) -> bool:
    """A whole response to ``GET /empty`` (headers and its 2-byte body) is in ``buffer``."""
    head, sep, body = buffer.partition(b"\r\n\r\n")
    return bool(sep) and head.startswith(b"HTTP/1.1 200") and len(body) >= 2


def open_idle(port: int, count: int, into: list[socket.socket]) -> int:
    """Open ``count`` keep-alive connections, each served one ``/empty`` (so the server has
    accepted it, not just the kernel), then left idle in ``into``. Returns the failures (it
    gives up after :data:`IDLE_MAX_FAILURES` or :data:`IDLE_OPEN_DEADLINE_S`)."""
    failures = 0
    deadline = time.monotonic() + IDLE_OPEN_DEADLINE_S
    while len(into) < count and failures < IDLE_MAX_FAILURES and time.monotonic() < deadline:
        batch = []
        for _ in range(min(IDLE_BATCH, count - len(into))):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(REQUEST)
                batch.append(sock)
            except OSError:
                failures += 1
        for sock in batch:
            buffer = b""
            try:
                while not answered(buffer):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionResetError("closed by the server")
                    buffer += chunk
                into.append(sock)
            except OSError:
                failures += 1
                sock.close()
    return failures


def still_open(sock: socket.socket) -> bool:
    """The server has not closed this idle connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def probe_ms(port: int, count: int = PROBES) -> list[float | None]:
    """``count`` ``/empty`` requests, each on a new connection; milliseconds (None: failed)."""
    took: list[float | None] = []
    for _ in range(count):
        started = time.monotonic()
        ok = get_ok(port, 10)
        took.append((time.monotonic() - started) * 1000 if ok else None)
    return took


def idle_check(candidate: Candidate, count: int, hold_s: float) -> dict[str, Any]:
    before = tree_status(candidate.pid)
    sockets: list[socket.socket] = []
    try:
        started = time.monotonic()
        failures = open_idle(candidate.port, count, sockets)
        opened_s = time.monotonic() - started
        time.sleep(1.0)
        after = tree_status(candidate.pid)
        held = sum(1 for s in sockets if still_open(s))
        probes = probe_ms(candidate.port)
        answered_ms = [p for p in probes if p is not None]
        result: dict[str, Any] = {
            "wanted": count,
            "opened": len(sockets),
            "open_failures": failures,
            "opened_in_s": round(opened_s, 2),
            "held": held,
            "before": before,
            "after": after,
            "probe_median_ms": statistics.median(answered_ms) if answered_ms else None,
            "probe_max_ms": max(answered_ms) if answered_ms else None,
            "probe_failed": len(probes) - len(answered_ms),
        }
        if hold_s:
            time.sleep(hold_s)
            result[f"held_after_{hold_s:g}s"] = sum(1 for s in sockets if still_open(s))
        # SIGTERM with the connections still open: does it exit, cleanly, and how fast?
        result["sigterm"] = candidate.stop()
        return result
    finally:
        for sock in sockets:
            sock.close()


def format_idle(idle: dict[str, dict[str, Any]], app_in_process: dict[str, bool]) -> str:
    lines = [
        f"{'candidate':<12} {'held':>11} {'threads':>9} {'RSS MB':>11} {'probe ms':>9} "
        f"{'max ms':>8} {'SIGTERM':>13} {'app in started process':>23} {'held later':>11}"
    ]
    for name, row in idle.items():
        b, a = row["before"], row["after"]
        term = row["sigterm"]
        code = "hung" if term["exit_code"] is None else f"rc {term['exit_code']}"
        code += f" {term['seconds']:.1f}s"
        median = row["probe_median_ms"]
        top = row["probe_max_ms"]
        lines.append(
            f"{name:<12} {row['held']:>5}/{row['wanted']:<5} "
            f"{b['threads']:>3}->{a['threads']:<4} "
            f"{b['rss_kb'] / 1024:>4.0f}->{a['rss_kb'] / 1024:<5.0f} "
            f"{'-' if median is None else f'{median:.1f}':>9} "
            f"{'-' if top is None else f'{top:.1f}':>8} "
            f"{code:>13} "
            f"{'yes' if app_in_process.get(name) else 'no':>23} "
            f"{held_later(row):>11}"
        )
    return "\n".join(lines)


def held_later(row: dict[str, Any]) -> str:
    """``5000 @65s`` when ``--idle-hold`` counted the open connections again, else empty."""
    for key, value in row.items():
        if key.startswith("held_after_"):
            return f"{value} @{key.removeprefix('held_after_')}"
    return ""


# -- main ----------------------------------------------------------------------------------------


def parse_points(text: str) -> list[tuple[str, int]]:
    """``"empty:16,mixed:64"`` as [("empty", 16), ("mixed", 64)]."""
    points = []
    for item in text.split(","):
        workload, _, connections = item.strip().partition(":")
        points.append((workload, int(connections)))
    return points


def raise_descriptor_limit(needed: int) -> None:
    """This process opens the idle connections; the candidates inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"the hard descriptor limit {hard} is below the {needed} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--idle", type=int, default=IDLE_CONNECTIONS, help="0: skip")
    parser.add_argument(
        "--idle-hold",
        type=float,
        default=0.0,
        help="seconds to keep the idle connections before counting again how many are open",
    )
    parser.add_argument("--slow-connections", type=int, default=SLOW_CONNECTIONS)
    parser.add_argument(
        "--points", default="", help="e.g. mixed:64 (default: every point of POINTS)"
    )
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    if not set(names) <= set(CANDIDATES):
        parser.error(f"unknown candidate in {args.candidates}")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    points = parse_points(args.points) if args.points else list(POINTS)
    if not set(points) <= set(POINTS):
        parser.error(f"unknown point in {args.points}")
    raise_descriptor_limit(args.idle + 4096)
    spins = calibrate()
    print(f"/work: {spins} iterations (~50 us here, calibrated once)", flush=True)

    log_dir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    candidates = {name: Candidate(name, log_dir, spins) for name in names}
    runs: list[dict[str, Any]] = []
    idle: dict[str, dict[str, Any]] = {}
    app_in_process: dict[str, bool] = {}
    try:
        for candidate in candidates.values():
            candidate.start()
            app_in_process[candidate.name] = candidate.app_pid() == candidate.pid
            wrk(candidate.base + "/empty", 1, connections=16)  # warm-up
            print(f"{candidate.name} on {candidate.base} (pid {candidate.pid})", flush=True)
        for r in range(args.rounds):
            for workload, connections in points:
                for name in rotated(names, r):
                    row = {
                        "round": r,
                        "workload": workload,
                        "connections": connections,
                        "candidate": name,
                        **measure(
                            candidates[name],
                            workload,
                            connections,
                            args.seconds,
                            args.slow_connections,
                        ),
                    }
                    runs.append(row)
                    print(
                        f"round {r + 1} {workload:<6} c{connections:<3} {name:<12} "
                        f"{row['rps']:>7.0f} req/s  p99 {row['p99_ms']:.2f} ms  "
                        f"CPU {row['cpu_us_per_req']:.0f} us/req  errors {row['errors']:.0f}",
                        flush=True,
                    )
        if args.idle:
            for name in names:
                idle[name] = idle_check(candidates[name], args.idle, args.idle_hold)
                print(f"idle {name}: {idle[name]}", flush=True)
    finally:
        for candidate in candidates.values():
            candidate.stop()
        logs = {c.name: c.log() for c in candidates.values()}
        shutil.rmtree(log_dir, ignore_errors=True)

    table = summarize(runs)
    print("\n" + format_table(table))
    if idle:
        print("\n" + format_idle(idle, app_in_process))
    save_results(
        "serving.json",
        {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": args.seconds,
            "rounds": args.rounds,
            "slow_connections": args.slow_connections,
            "work_spins": spins,
            "load_average": os.getloadavg(),
            "app_in_started_process": app_in_process,
            "table": table,
            "idle": idle,
            "runs": runs,
            "logs": {k: v for k, v in logs.items() if v.strip()},
        },
    )
    print("\nwrote bench/results/serving.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
