"""``make bench``: throughput of the hot endpoints and memory per instance, on one node.

Starts a real node (auth on, as shipped) on a free loopback port and drives it with wrk
(Debian package ``wrk``) at 64 connections. Every figure is also printed as a ratio to an empty
Django view on the same server in the same run, because the load generator and the node share
this machine's two cores and absolute numbers move with everything else running.

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

from tests.harness import NodeProcess  # noqa: E402

# Requests are built once per wrk thread in init(): per-request Lua string work would eat CPU
# that the node needs (wrk and the node share the two cores).
REGISTER_LUA = """
local token = "%(token)s"
local reqs = {}
local i = 0
local tid = 0
setup = function(thread) tid = tid + 1; thread:set("tid", tid) end
init = function(args)
  for n = 1, 60000 do
    reqs[n] = wrk.format("POST", string.format(
      "/nacos/v1/ns/instance?serviceName=bench-reg-%%d&ip=10.%%d.%%d.%%d&port=%%d&accessToken=%%s",
      n %% 100, tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n, token))
  end
end
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
"""

BEAT_LUA = """
local token = "%(token)s"
local reqs = {}
local i = 0
init = function(args)
  for n = 0, %(count)d - 1 do
    local beat = string.format(
      "%%%%7B%%%%22ip%%%%22%%%%3A%%%%2210.200.%%d.%%d%%%%22%%%%2C%%%%22port%%%%22%%%%3A%%d%%%%7D",
      math.floor(n / 250), n %% 250, 2000 + n)
    reqs[n + 1] = wrk.format("PUT",
      "/nacos/v1/ns/instance/beat?serviceName=bench-beat&accessToken=" .. token .. "&beat=" .. beat)
  end
end
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
"""

FILL_LUA = """
local token = "%(token)s"
local per_thread = %(per_thread)d
local tid = 0
setup = function(thread) tid = tid + 1; thread:set("tid", tid) end
local sent = 0
request = function()
  sent = sent + 1
  local n = (tid - 1) * per_thread + sent
  local path = string.format(
    "/nacos/v1/ns/instance?serviceName=mem-%%d&ip=10.%%d.%%d.%%d&port=%%d&accessToken=%%s",
    n %% 1000, 100 + math.floor(n / 62500), math.floor(n / 250) %% 250, n %% 250, 3000, token)
  return wrk.format("POST", path)
end
response = function(status, headers, body)
  if sent >= per_thread then wrk.thread:stop() end
end
"""


def wrk(
    url: str, seconds: int, script: str | None = None, connections: int = 64, threads: int = 2
) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.TemporaryDirectory() as tmp:
        if script is not None:
            script_path = Path(tmp) / "load.lua"
            script_path.write_text(script)
            cmd += ["-s", str(script_path)]
        run = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 120)
    out = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rps,
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def median_run(rounds: int, fn) -> dict[str, float]:  # type: ignore[no-untyped-def]
    runs = [fn() for _ in range(rounds)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


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
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    data_dir = Path(tempfile.mkdtemp(prefix="naming-bench-"))
    node = NodeProcess(
        data_dir,
        env={
            "NAMING_LOG_LEVEL": "WARNING",
            **{k: v for k, v in os.environ.items() if k.startswith("NAMING_")},
        },
    ).start()
    results: dict[str, dict[str, float]] = {}
    try:
        token = node.token()
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

        def run(name: str, url: str, script: str | None = None) -> None:
            results[name] = median_run(args.rounds, lambda: wrk(url, args.seconds, script))
            row = results[name]
            print(
                f"{name:<12} {row['rps']:>8.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                f"non-2xx {row['non2xx']:.0f}",
                flush=True,
            )

        run("empty_view", f"{base}/bench/empty")
        run("register", base, REGISTER_LUA % {"token": token})
        run("beat", base, BEAT_LUA % {"token": token, "count": 1000})
        run(
            "list_100",
            f"{base}/nacos/v1/ns/instance/list?serviceName=bench-list&accessToken={token}",
        )
        floor = results["empty_view"]["rps"]
        print("\nratio to the empty view in the same run:")
        for name in ("register", "beat", "list_100"):
            results[name]["ratio_to_empty"] = results[name]["rps"] / floor
            print(f"  {name:<10} {results[name]['ratio_to_empty']:.2f}")

        if not args.skip_memory:
            node.stop()
            node.start()
            token = node.token()
            assert node.proc is not None
            time.sleep(1)
            before = rss_kb(node.proc.pid)
            per_thread = args.instances // 2
            started = time.monotonic()
            wrk(
                node.base,
                600,
                FILL_LUA % {"token": token, "per_thread": per_thread},
                connections=2,
                threads=2,
            )
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
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
