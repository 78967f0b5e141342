"""``make bench``: throughput of the hot endpoints and memory per instance, on one node.

Starts a real node (auth on, as shipped) on a free loopback port and drives it with wrk
(Debian package ``wrk``) at 64 connections. Every figure is also printed as a ratio to an empty
Django view on the same server in the same run, because the load generator and the node share
this machine's two cores and absolute numbers move with everything else running.

The load runs as a user without the admin role holding ``rw`` on the public namespace
(``--caller user``, the default), so every request takes the authorization path a real client
takes (decision cache included); ``--caller admin`` uses the admin, whom authorization passes
at once.

Bounded: each wrk run lasts ``--seconds`` (default 10) and is repeated ``--rounds`` times (median
reported); the memory phase registers exactly ``--instances`` instances. The node is stopped by
its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.harness import NodeProcess  # noqa: E402


def cycling_lua(build: str) -> str:
    """A wrk script whose requests are built once per thread by ``build`` (Lua filling ``reqs``)
    and then replayed in a loop: per-request Lua string work would eat CPU the node needs (wrk
    and the node share the two cores). Every scenario, the empty-view floor included, pays the
    same per-request generator cost. The result is a %-template (``%%`` for a literal ``%``)."""
    return (
        "local reqs = {}\nlocal i = 0\nlocal made = 0\n"
        # ``tid`` (1, 2, ...) is a global of each thread's own Lua state, set by ``setup`` (which
        # runs in the main state): a ``local tid`` here would shadow it with 0 in every thread.
        'setup = function(thread) made = made + 1; thread:set("tid", made) end\n'
        f"init = function(args)\n{build}\nend\n"
        "request = function()\n  i = i %% #reqs + 1\n  return reqs[i]\nend\n"
    )


REGISTER_LUA = cycling_lua("""
  for n = 1, 60000 do
    reqs[n] = wrk.format("POST", string.format(
      "/nacos/v1/ns/instance?serviceName=bench-reg-%%d&ip=10.%%d.%%d.%%d&port=%%d&accessToken=%%s",
      n %% 100, tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n, "%(token)s"))
  end""")

BEAT_LUA = cycling_lua("""
  for n = 0, %(count)d - 1 do
    local beat = string.format(
      "%%%%7B%%%%22ip%%%%22%%%%3A%%%%2210.200.%%d.%%d%%%%22%%%%2C%%%%22port%%%%22%%%%3A%%d%%%%7D",
      math.floor(n / 250), n %% 250, 2000 + n)
    reqs[n + 1] = wrk.format("PUT",
      "/nacos/v1/ns/instance/beat?serviceName=bench-beat&accessToken=%(token)s&beat=" .. beat)
  end""")

EMPTY_LUA = cycling_lua("""
  for n = 1, 1000 do reqs[n] = wrk.format("GET", "/bench/empty") end""")

LIST_LUA = cycling_lua("""
  for n = 1, 1000 do
    reqs[n] = wrk.format("GET",
      "/nacos/v1/ns/instance/list?serviceName=bench-list&accessToken=%(token)s")
  end""")


def fill(
    host: str,
    port: int,
    token: str,
    count: int,
    threads: int = 4,
    prefix: str = "mem",
    services: int = 1000,
) -> None:
    """Register ``count`` distinct ephemeral instances over keep-alive connections: instance
    ``n`` is ``10.<100 + n // 62500>.<n // 250 % 250>.<n % 250>:3000`` in ``<prefix>-<n %
    services>``."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    def worker(part: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for n in range(part, count, threads):
            path = (
                f"/nacos/v1/ns/instance?serviceName={prefix}-{n % services}&ip=10."
                f"{100 + n // 62500}.{n // 250 % 250}.{n % 250}&port=3000&accessToken={token}"
            )
            conn.request("POST", path)
            response = conn.getresponse()
            if response.read() != b"ok":
                raise RuntimeError(f"register failed: {response.status}")
        conn.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))


def user_token(node: NodeProcess, username: str = "bench") -> str:
    """The token of a new user without the admin role holding ``rw`` on the public namespace:
    its requests take the authorization path a real client takes."""
    password = f"{username}-user-pass"
    node.create_user(username, password, ((":*:*", "rw"),))
    login = node.request(
        "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
    )
    assert login.status == 200, login.text
    return str(login.json()["accessToken"])


def wrk(
    url: str,
    seconds: int,
    script: str | None = None,
    connections: int = 64,
    threads: int = 2,
    timeout_s: int = 2,
) -> dict[str, float]:
    """One wrk run; a request unanswered after ``timeout_s`` counts as a socket error."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd.append(f"--timeout={timeout_s}s")
    with tempfile.TemporaryDirectory() as tmp:
        if script is not None:
            script_path = Path(tmp) / "load.lua"
            script_path.write_text(script)
            cmd += ["-s", str(script_path)]
        run = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 120)
    if "Requests/sec:" not in run.stdout:
        tail = run.stderr[-2000:] + run.stdout[-2000:]
        raise RuntimeError(f"wrk failed ({run.returncode}): {tail}")
    return parse_wrk(run.stdout)


_LATENCY_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(out: str) -> dict[str, float]:
    """wrk's summary (run with ``--latency``) as numbers: ``rps``, ``requests`` and ``seconds``
    (the measured duration), ``p50_ms``/``p99_ms``, ``non2xx`` and ``socket_errors`` (connect,
    read, write and timeout errors added up), plus every ``lua <name>: <number>`` line a
    script's ``done`` printed, as ``<name>``."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise ValueError(f"not a wrk summary: {out[-500:]!r}")
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    row = {
        "rps": float(rps.group(1)),
        "requests": float(total.group(1)) if total else float("nan"),
        "seconds": (
            float(total.group(2)) * _LATENCY_SCALE[total.group(3)] / 1000.0
            if total
            else float("nan")
        ),
        "p50_ms": _percentile_ms(out, "50"),
        "p99_ms": _percentile_ms(out, "99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(n) for n in errors.groups())) if errors else 0.0,
    }
    for name, value in re.findall(r"^lua (\w+): ([\d.]+)$", out, re.MULTILINE):
        row[name] = float(value)
    return row


def _percentile_ms(out: str, percent: str) -> float:
    found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\b", out, re.MULTILINE)
    return float(found.group(1)) * _LATENCY_SCALE[found.group(2)] if found else float("nan")


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU the process ``pid`` has used so far (its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_env(**settings: str) -> dict[str, str]:
    """A benched node's environment: warnings only, then ``settings``, then the NAMING_*
    variables the caller exported (they win: e.g. ``NAMING_SWEEP_ENABLED=false make bench``)."""
    exported = {k: v for k, v in os.environ.items() if k.startswith("NAMING_")}
    return {"NAMING_LOG_LEVEL": "WARNING", **settings, **exported}


def caller_token(node: NodeProcess, caller: str) -> str:
    """The token the load carries: the admin's, or (``user``) that of :func:`user_token`."""
    return node.token() if caller == "admin" else user_token(node)


def save_results(name: str, results: object) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(results, indent=2))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--caller",
        choices=("user", "admin"),
        default="user",
        help="who drives the load: a user with rw on public (RBAC path) or the admin",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    data_dir = Path(tempfile.mkdtemp(prefix="naming-bench-"))
    node = NodeProcess(data_dir, env=bench_env()).start()
    results: dict[str, dict[str, float]] = {}
    try:
        token = caller_token(node, args.caller)
        base = node.base
        # Fixtures: a 100-instance service to list and 1,000 instances to beat.
        client = node.client()
        for i in range(100):
            client.add_naming_instance("bench-list", f"10.100.0.{i}", 8080, cluster_name="DEFAULT")
        for i in range(1000):
            client.add_naming_instance(
                "bench-beat", f"10.200.{i // 250}.{i % 250}", 2000 + i, cluster_name="DEFAULT"
            )
        wrk(f"{base}/bench/empty", 2)  # warm-up

        def measure(name: str, url: str, script: str | None = None) -> None:
            """Each round measures the empty view right before the endpoint: the machine's
            speed drifts (shared cores, a noisy host), so the ratio is taken per pair."""
            pairs = []
            for _ in range(args.rounds):
                floor = wrk(base, args.seconds, EMPTY_LUA % {})
                pairs.append((floor, wrk(url, args.seconds, script)))
            row = {k: statistics.median(p[1][k] for p in pairs) for k in pairs[0][1]}
            row["empty_rps"] = statistics.median(p[0]["rps"] for p in pairs)
            row["ratio_to_empty"] = statistics.median(p[1]["rps"] / p[0]["rps"] for p in pairs)
            results[name] = row
            print(
                f"{name:<10} {row['rps']:>7.0f} req/s (empty view {row['empty_rps']:>5.0f})  "
                f"ratio {row['ratio_to_empty']:.2f}  p50 {row['p50_ms']:.1f} ms  "
                f"non-2xx {row['non2xx']:.0f}",
                flush=True,
            )

        # Beats first: later phases take long enough for unbeaten fixtures to expire.
        measure("beat", base, BEAT_LUA % {"token": token, "count": 1000})
        measure("list_100", base, LIST_LUA % {"token": token})
        measure("register", base, REGISTER_LUA % {"token": token})

        if not args.skip_memory:
            node.stop()
            node.start()
            token = node.token()
            assert node.proc is not None
            # Nothing beats these instances: switch beat expiry off (the Nacos "check" switch)
            # or the first ones expire while the last are still being registered.
            off = node.api("PUT", "/operator/switches", {"entry": "check", "value": "false"})
            assert off.text == "ok", off.text
            time.sleep(1)
            before = rss_kb(node.proc.pid)
            started = time.monotonic()
            fill("127.0.0.1", node.port, token, args.instances)
            elapsed = time.monotonic() - started
            count = node.request("GET", "/nacos/v1/ns/operator/metrics").json()["instanceCount"]
            time.sleep(1)
            after = rss_kb(node.proc.pid)
            per_instance = (after - before) * 1024 / max(count, 1)
            results["memory"] = {
                "instances": count,
                "rss_before_kb": before,
                "rss_after_kb": after,
                "bytes_per_instance": per_instance,
                "fill_seconds": elapsed,
            }
            print(
                f"\nmemory: {count} instances, RSS {before} kB -> {after} kB, "
                f"{per_instance:.0f} bytes/instance (filled in {elapsed:.1f} s)"
            )
    finally:
        node.stop()
        node.kill9()
        shutil.rmtree(data_dir, ignore_errors=True)
    save_results("latest.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
