"""``python3 dev.py bench-peers`` (issue #11): the node side by side with etcd 3.4, in one run.

Starts one etcd member (Debian ``etcd-server``, installed here with apt-get when missing) on
free loopback ports with a temporary data dir and auth off, and two nodes: one with auth off and
one with auth on (its load runs as a user without the admin role holding ``rw`` on public, as
``bench/run.py --caller user``). All three hold 10,000 instances in 100 services (on etcd: a
lease each and a key under it holding an instance's JSON) and a 100-instance service to list.
The three workloads, each with ``wrk -t2`` at 16 and 64 connections:

1. register: node ``POST /nacos/v1/ns/instance`` of distinct instances (fresh services each
   run); etcd ``/v3/lease/grant`` then ``/v3/kv/put`` of a key under that lease. A registration
   is one request on the node and two on etcd: the etcd script counts completed puts, and its
   latency figures are per request (a registration waits for two);
2. beat: node ``PUT /nacos/v1/ns/instance/beat`` cycling over the 10,000 instances; etcd
   ``/v3/lease/keepalive`` cycling over the 10,000 leases;
3. list: node ``GET /nacos/v1/ns/instance/list`` of the 100-instance service; etcd
   ``/v3/kv/range`` over that service's prefix (100 keys whose values are the node's own JSON
   for those instances).

Every (workload, connections) point runs ``--rounds`` times with the three targets in rotation
(the starting target moves each round); medians are reported with the ratio to etcd (median of
the per-round ratios), the server CPU per operation (utime + stime of the server's PID over the
wrk run, divided by its operations) and, per endpoint, auth on / auth off. A run with any
non-2xx answer or socket error fails. Results: ``bench/results/peers.json`` and the bar chart
``bench/results/peers.png``.

Nothing beats or expires during the run: the node's sweeper is off (``NAMING_SWEEP_ENABLED``)
and etcd's leases last an hour. Every process started here is stopped by its PID in ``finally``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    cpu_seconds_of,
    cycling_lua,
    fill,
    save_results,
    user_token,
    wrk,
)
from testkit.harness import NodeProcess, free_port, wait_for  # noqa: E402

WORKLOADS = ("register", "beat", "list")
CONNECTIONS = (16, 64)
TARGETS = ("etcd", "node_auth_off", "node_auth_on")
# Issue #11: node ops/s at least this many times etcd's, at both connection counts.
GOALS = {"register": 1.5, "beat": 1.0, "list": 3.0}
# Issue #11: auth on costs at most 10 % of the auth-off throughput.
AUTH_GOAL = 0.9
INSTANCES = 10_000
SERVICES = 100
LIST_SIZE = 100
LEASE_TTL_S = 3600  # longer than any run: nothing expires while measuring
WRK_TIMEOUT_S = 10
REGISTER_PER_THREAD = 30_000  # distinct instances per wrk thread and run (never wraps in 5 s)

BEAT_PREFIX = "peers-beat"
LIST_SERVICE = "peers-list-0"  # what bench.run.fill names service 0 of prefix "peers-list"


# -- wrk scripts: requests built once per thread, replayed (see bench.run.cycling_lua) ------------

NODE_REGISTER_LUA = cycling_lua("""
  for n = 1, %(per_thread)d do
    reqs[n] = wrk.format("POST", string.format(
      "/nacos/v1/ns/instance?serviceName=reg%(run)d-%%d&ip=10.%%d.%%d.%%d&port=%%d%(auth)s",
      n %% 100, tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n))
  end""")

NODE_BEAT_LUA = cycling_lua("""
  for n = 0, %(count)d - 1 do
    local beat = string.format(
      "%%%%7B%%%%22ip%%%%22%%%%3A%%%%2210.100.%%d.%%d%%%%22%%%%2C%%%%22port%%%%22%%%%3A3000%%%%7D",
      math.floor(n / 250) %% 250, n %% 250)
    reqs[n + 1] = wrk.format("PUT", string.format(
      "/nacos/v1/ns/instance/beat?serviceName=%(prefix)s-%%d%(auth)s&beat=%%s",
      n %% %(services)d, beat))
  end
  i = (tid - 1) * math.floor(#reqs / 2)""")

NODE_LIST_LUA = cycling_lua("""
  reqs[1] = wrk.format("GET", "/nacos/v1/ns/instance/list?serviceName=%(service)s%(auth)s")""")

ETCD_KEEPALIVE_LUA = cycling_lua("""
  local ids = {%(ids)s}
  for n = 1, #ids do
    reqs[n] = wrk.format("POST", "/v3/lease/keepalive", nil, '{"ID":"' .. ids[n] .. '"}')
  end
  i = (tid - 1) * math.floor(#reqs / 2)""")

ETCD_RANGE_LUA = cycling_lua("""
  reqs[1] = wrk.format("POST", "/v3/kv/range", nil,
    '{"key":"%(key)s","range_end":"%(range_end)s"}')""")

# Not a cycling script: a put needs the lease ID its grant returned. Any connection may take the
# next request, so grants answered wait in ``pending`` and the next request puts under one of them
# (or grants again when none waits). ``response`` only extracts the ID; ``done`` sums the puts.
ETCD_REGISTER_LUA = """
local threads = {}
local made = 0
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for p = 1, #s, 3 do
    local a, b, c = s:byte(p, p + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local d = {math.floor(v / 262144) %% 64, math.floor(v / 4096) %% 64,
               math.floor(v / 64) %% 64, v %% 64}
    out[#out + 1] = B64:sub(d[1] + 1, d[1] + 1) .. B64:sub(d[2] + 1, d[2] + 1)
      .. (b and B64:sub(d[3] + 1, d[3] + 1) or "=") .. (c and B64:sub(d[4] + 1, d[4] + 1) or "=")
  end
  return table.concat(out)
end
local grant, keys, pending, k
puts = 0
setup = function(thread)
  made = made + 1
  thread:set("tid", made)  -- a global of the thread's state (see bench.run.cycling_lua)
  table.insert(threads, thread)
end
init = function(args)
  grant = wrk.format("POST", "/v3/lease/grant", nil, '{"TTL":%(ttl)d}')
  keys, pending, k = {}, {}, 0
  for n = 1, %(per_thread)d do
    keys[n] = b64(string.format("/nacos/reg%(run)d-%%d/10.%%d.%%d.%%d:%%d",
      n %% 100, tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n))
  end
end
request = function()
  local id = table.remove(pending)
  if id == nil then return grant end
  k = k %% #keys + 1
  return wrk.format("POST", "/v3/kv/put", nil,
    '{"key":"' .. keys[k] .. '","value":"%(value)s","lease":"' .. id .. '"}')
end
response = function(status, headers, body)
  if status ~= 200 then return end
  local id = body:match('"ID":"(%%d+)"')
  if id then pending[#pending + 1] = id else puts = puts + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("puts") end
  io.write(string.format("lua registrations: %%d\\n", total))
end
"""


# -- etcd ---------------------------------------------------------------------------------------


def ensure_etcd() -> str:
    """The etcd binary; installs Debian's ``etcd-server`` when it is missing."""
    found = shutil.which("etcd")
    if found:
        return found
    print("etcd is missing: apt-get install -y etcd-server", flush=True)
    install = ["apt-get", "install", "-y", "etcd-server"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError("etcd-server installed but no etcd on PATH")
    return found


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    """One etcd member on loopback (client and peer ports free, auth off), stopped by PID."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "unknown"

    def start(self) -> Etcd:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--name=peers",
                    f"--data-dir={self.data_dir / 'member'}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=peers={peer}",
                    "--initial-cluster-state=new",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=2)
            try:
                conn.request("GET", "/health")
                return bool(json.loads(conn.getresponse().read()).get("health") == "true")
            finally:
                conn.close()

        wait_for(healthy, 30, message="etcd healthy")
        return self

    def log(self) -> str:
        try:
            return (self.data_dir / "etcd.log").read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def etcd_call(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> Any:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"etcd {path}: {response.status} {data[:300]!r}")
    return json.loads(data)


def on_connections(
    port: int, items: list[Any], work: Callable[[http.client.HTTPConnection, Any], Any]
) -> list[Any]:
    """``work(conn, item)`` for every item, 8 keep-alive connections in parallel (etcd batches
    the fsyncs of concurrent writes); results in item order."""
    threads = 8

    def part(index: int) -> list[Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            return [work(conn, item) for item in items[index::threads]]
        finally:
            conn.close()

    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(part, range(threads)))
    out: list[Any] = [None] * len(items)
    for index, results in enumerate(parts):
        out[index::threads] = results
    return out


def fill_etcd(etcd: Etcd, hosts: list[dict[str, Any]]) -> list[str]:
    """The etcd side of the fixtures: ``INSTANCES`` leases with one instance key each (the ids
    are returned) and the 100 keys of the listed service. ``hosts`` are the node's own JSON for
    the listed instances, used as values."""

    def register(conn: http.client.HTTPConnection, n: int) -> str:
        lease = etcd_call(conn, "/v3/lease/grant", {"TTL": LEASE_TTL_S})["ID"]
        key = f"/nacos/{BEAT_PREFIX}-{n % SERVICES}/10.100.{n // 250 % 250}.{n % 250}:3000"
        value = json.dumps(hosts[n % len(hosts)])
        etcd_call(conn, "/v3/kv/put", {"key": b64(key), "value": b64(value), "lease": lease})
        return str(lease)

    def put_listed(conn: http.client.HTTPConnection, n: int) -> None:
        key = f"/nacos/{LIST_SERVICE}/{hosts[n]['ip']}:{hosts[n]['port']}"
        etcd_call(conn, "/v3/kv/put", {"key": b64(key), "value": b64(json.dumps(hosts[n]))})

    on_connections(etcd.client_port, list(range(len(hosts))), put_listed)
    return on_connections(etcd.client_port, list(range(INSTANCES)), register)


# -- nodes --------------------------------------------------------------------------------------


def start_node(data_dir: Path, auth: bool) -> NodeProcess:
    env = {k: v for k, v in os.environ.items() if k.startswith("NAMING_")}
    env.update(
        NAMING_LOG_LEVEL="WARNING",
        NAMING_SWEEP_ENABLED="false",  # nothing beats between the beat runs
        NAMING_AUTH_ENABLED="true" if auth else "false",
    )
    return NodeProcess(data_dir, env=env).start()


def fill_node(node: NodeProcess, token: str) -> list[dict[str, Any]]:
    """The node side of the fixtures; returns the listed service's hosts as the node renders
    them."""
    fill("127.0.0.1", node.port, token, INSTANCES, prefix=BEAT_PREFIX, services=SERVICES)
    fill("127.0.0.1", node.port, token, LIST_SIZE, prefix="peers-list", services=1)
    listed = node.request(
        "GET", "/nacos/v1/ns/instance/list", {"serviceName": LIST_SERVICE, "accessToken": token}
    ).json()["hosts"]
    assert len(listed) == LIST_SIZE, listed
    beat = node.request(
        "PUT",
        "/nacos/v1/ns/instance/beat",
        {
            "serviceName": f"{BEAT_PREFIX}-{(INSTANCES - 1) % SERVICES}",
            "beat": json.dumps(
                {"ip": f"10.100.{(INSTANCES - 1) // 250}.{(INSTANCES - 1) % 250}", "port": 3000}
            ),
            "accessToken": token,
        },
    ).json()
    assert beat["code"] == 10200, beat  # the instances the beat script names exist
    return list(listed)


# -- measuring ----------------------------------------------------------------------------------


class Target:
    """One server under test: where wrk goes, whose CPU counts, and its scripts."""

    def __init__(self, name: str, base: str, pid: int, scripts: Callable[[str, int], str]) -> None:
        self.name = name
        self.base = base
        self.pid = pid
        self.scripts = scripts  # (workload, run number) -> wrk Lua


def node_target(name: str, node: NodeProcess, token: str) -> Target:
    auth = f"&accessToken={token}" if token else ""

    def scripts(workload: str, run: int) -> str:
        if workload == "register":
            return NODE_REGISTER_LUA % {"run": run, "auth": auth, "per_thread": REGISTER_PER_THREAD}
        if workload == "beat":
            return NODE_BEAT_LUA % {
                "auth": auth,
                "count": INSTANCES,
                "prefix": BEAT_PREFIX,
                "services": SERVICES,
            }
        return NODE_LIST_LUA % {"service": LIST_SERVICE, "auth": auth}

    assert node.proc is not None
    return Target(name, node.base, node.proc.pid, scripts)


def etcd_target(etcd: Etcd, leases: list[str], value: str) -> Target:
    ids = ",".join(f'"{lease}"' for lease in leases)
    prefix = f"/nacos/{LIST_SERVICE}/"

    def scripts(workload: str, run: int) -> str:
        if workload == "register":
            return ETCD_REGISTER_LUA % {
                "run": run,
                "ttl": LEASE_TTL_S,
                "per_thread": REGISTER_PER_THREAD,
                "value": value,
            }
        if workload == "beat":
            return ETCD_KEEPALIVE_LUA % {"ids": ids}
        # range_end = the prefix with its last byte + 1: every key that starts with the prefix.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return ETCD_RANGE_LUA % {"key": b64(prefix), "range_end": b64(end)}

    assert etcd.proc is not None
    return Target("etcd", etcd.base, etcd.proc.pid, scripts)


def measure(
    target: Target, workload: str, connections: int, seconds: int, run: int
) -> dict[str, float]:
    """One wrk run; fails on any non-2xx answer or socket error."""
    before = cpu_seconds_of(target.pid)
    # A slow answer is measured, not an error: on this shared box etcd's 100-key range at 64
    # connections reached p99 > 1 s, past wrk's default 2 s timeout in places.
    row = wrk(
        target.base,
        seconds,
        target.scripts(workload, run),
        connections=connections,
        timeout_s=WRK_TIMEOUT_S,
    )
    cpu = cpu_seconds_of(target.pid) - before
    errors = row["non2xx"] + row["socket_errors"]
    if errors:
        raise RuntimeError(
            f"{target.name} {workload} at {connections} connections: {row['non2xx']:.0f} "
            f"non-2xx, {row['socket_errors']:.0f} socket errors"
        )
    ops = row.get("registrations", row["requests"])
    return {
        "ops": ops,
        "ops_s": ops / row["seconds"],
        "requests": row["requests"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
        "cpu_s": cpu,
        "cpu_us_per_op": cpu / ops * 1e6 if ops else float("nan"),
    }


def rotation(round_index: int) -> list[str]:
    """The targets in rotation, starting one further each round (no target always goes first)."""
    start = round_index % len(TARGETS)
    return [*TARGETS[start:], *TARGETS[:start]]


# -- the table (pure) ---------------------------------------------------------------------------


def summarize(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median per (workload, connections, target) of the rounds' runs. ``ratio_to_etcd`` is the
    median of the per-round ratios to etcd's run of the same round (the box drifts between
    rounds), ``auth_cost`` (auth-on rows) the median of the per-round auth-on / auth-off."""
    by_point: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = {}
    for run in runs:
        point = (run["workload"], run["connections"], run["target"])
        by_point.setdefault(point, {})[run["round"]] = run
    table = []
    for (workload, connections, target), rounds in sorted(
        by_point.items(),
        key=lambda item: (WORKLOADS.index(item[0][0]), item[0][1], TARGETS.index(item[0][2])),
    ):
        row: dict[str, Any] = {"workload": workload, "connections": connections, "target": target}
        for key in ("ops_s", "p50_ms", "p99_ms", "cpu_us_per_op"):
            row[key] = statistics.median(r[key] for r in rounds.values())
        row["ratio_to_etcd"] = _median_ratio(
            rounds, by_point.get((workload, connections, "etcd"), {})
        )
        if target == "node_auth_on":
            row["auth_cost"] = _median_ratio(
                rounds, by_point.get((workload, connections, "node_auth_off"), {})
            )
        table.append(row)
    return table


def _median_ratio(rounds: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]]) -> float:
    ratios = [r["ops_s"] / base[i]["ops_s"] for i, r in rounds.items() if i in base]
    return statistics.median(ratios) if ratios else float("nan")


def format_table(table: list[dict[str, Any]]) -> str:
    lines = [
        f"{'workload':<9} {'conns':>5} {'target':<14} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU us/op':>9} {'x etcd':>7} {'goal':>5} {'auth on/off':>11}"
    ]
    for row in table:
        node = row["target"] != "etcd"
        goal = GOALS[row["workload"]]
        ratio = f"{row['ratio_to_etcd']:.2f}" if node else ""
        mark = ("ok" if row["ratio_to_etcd"] >= goal else "MISS") if node else ""
        auth = f"{row['auth_cost']:.2f}" if "auth_cost" in row else ""
        lines.append(
            f"{row['workload']:<9} {row['connections']:>5} {row['target']:<14} "
            f"{row['ops_s']:>8.0f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['cpu_us_per_op']:>9.0f} {ratio:>7} {mark:>5} {auth:>11}"
        )
    return "\n".join(lines)


# -- the chart ----------------------------------------------------------------------------------


def chart(table: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bars of ops/s per workload (one panel each) and connection count; a dashed mark at the
    goal (etcd x the issue's factor) over the node bars, each node bar labelled with its ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"etcd": "#7f7f7f", "node_auth_off": "#1f77b4", "node_auth_on": "#ff7f0e"}
    labels = {
        "etcd": "etcd 3.4",
        "node_auth_off": "node, auth off",
        "node_auth_on": "node, auth on",
    }
    rows = {(r["workload"], r["connections"], r["target"]): r for r in table}
    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(13, 4.8))
    width = 0.26
    for ax, workload in zip(axes, WORKLOADS, strict=True):
        goal = GOALS[workload]
        for g, connections in enumerate(CONNECTIONS):
            etcd_row = rows.get((workload, connections, "etcd"))
            for t, target in enumerate(TARGETS):
                row = rows.get((workload, connections, target))
                if row is None:
                    continue
                x = g + (t - 1) * width
                ax.bar(
                    x,
                    row["ops_s"],
                    width,
                    color=colors[target],
                    label=labels[target],
                )
                if target != "etcd":
                    ax.annotate(
                        f"{row['ratio_to_etcd']:.2f}x",
                        (x, row["ops_s"]),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                    )
            if etcd_row is not None:
                level = etcd_row["ops_s"] * goal
                ax.hlines(
                    level,
                    g - 0.5 * width,
                    g + 1.5 * width,
                    colors="red",
                    linestyles="dashed",
                    label="goal (issue #11): etcd x the factor in the title",
                )
        ax.set_xticks(range(len(CONNECTIONS)), [f"{c} connections" for c in CONNECTIONS])
        ax.set_title(
            {
                "register": "register (etcd: lease grant + put)",
                "beat": "heartbeat (etcd: lease keepalive)",
                "list": "list 100 instances (etcd: range)",
            }[workload]
            + f"\ngoal: node >= {goal:g}x etcd",
            fontsize=10,
        )
        ax.set_ylabel("operations/s (median)")
        ax.margins(y=0.15)
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one entry per series
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of register,beat,list",
    )
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    if not set(workloads) <= set(WORKLOADS):
        parser.error(f"unknown workload in {args.workloads}")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    binary = ensure_etcd()

    base = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    etcd = Etcd(binary, base / "etcd")
    nodes: list[NodeProcess] = []
    try:
        etcd.start()
        print(f"{etcd.version()} on {etcd.base}", flush=True)
        targets: dict[str, Target] = {}
        value = ""
        for name, auth in (("node_auth_off", False), ("node_auth_on", True)):
            node = start_node(base / name, auth)
            nodes.append(node)
            token = user_token(node) if auth else ""
            started = time.monotonic()
            hosts = fill_node(node, token)
            print(
                f"{name} on {node.base}: fixtures in {time.monotonic() - started:.1f} s", flush=True
            )
            targets[name] = node_target(name, node, token)
        started = time.monotonic()
        leases = fill_etcd(etcd, hosts)
        value = b64(json.dumps(hosts[0]))
        targets["etcd"] = etcd_target(etcd, leases, value)
        print(f"etcd fixtures in {time.monotonic() - started:.1f} s", flush=True)
        for target in targets.values():  # warm-up
            measure(target, "list", 16, 1, 0)

        runs: list[dict[str, Any]] = []
        run_number = 0
        for r in range(args.rounds):
            for workload in workloads:
                for connections in CONNECTIONS:
                    for name in rotation(r):
                        run_number += 1
                        row: dict[str, Any] = {
                            "round": r,
                            "workload": workload,
                            "connections": connections,
                            "target": name,
                            **measure(
                                targets[name], workload, connections, args.seconds, run_number
                            ),
                        }
                        runs.append(row)
                        print(
                            f"round {r + 1} {workload:<8} c{connections:<3} {name:<14} "
                            f"{row['ops_s']:>7.0f} ops/s  p50 {row['p50_ms']:.2f} ms  "
                            f"p99 {row['p99_ms']:.2f} ms  CPU {row['cpu_us_per_op']:.0f} us/op",
                            flush=True,
                        )
    finally:
        for node in nodes:
            try:
                node.stop()
            finally:
                node.kill9()
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)

    table = summarize(runs)
    print("\n" + format_table(table))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = {
        "date": when,
        "etcd": etcd.version(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "instances": INSTANCES,
        "services": SERVICES,
        "goals": GOALS,
        "auth_goal": AUTH_GOAL,
        "note": "etcd register latency is per HTTP request (a registration is two)",
        "table": table,
        "runs": runs,
    }
    save_results("peers.json", results)
    out = ROOT / "bench" / "results" / "peers.png"
    chart(
        table,
        out,
        f"node vs etcd 3.4, wrk -t2, medians of {args.rounds} x {args.seconds} s, "
        f"{when}, shared 2-core box",
    )
    print(f"\nwrote bench/results/peers.json and {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
