"""``python3 dev.py bench-distro`` companion for issue #3: Distro (AP), 3 members on loopback.

Measures, with auth on and the cluster secret set by the test harness:

1. replication latency of ephemeral changes: each change is a registration sent to the owner of
   its service; one watcher thread per member polls ``instance/list`` on a keep-alive connection
   (every ``--poll-ms``) and timestamps the first answer that shows the new instance. A change's
   latency runs from just before the client sends it until *both* other members show it;
2. register throughput with wrk at 64 connections against one member, for services it owns and
   then for services another member owns (each write forwarded once, signed, to the owner),
   interleaved, ``--rounds`` pairs, each run on fresh services;
3. the startup snapshot, on a fresh cluster: fill it with ``--instances`` ephemeral instances
   (each sent to its owner), kill -9 one member (not the Raft leader), start it again and read
   ``distro.snapshot`` from its metrics, the wall time from process start to UP and, from its
   log, when the snapshot load started and ended; then time each step of a snapshot transfer
   (server encode + HTTP, decode, store apply, registry rebuild) once more from this process.

4. what sync-ack mode (``NAMING_DISTRO_SYNC_ACK=true``) costs: two 3-member clusters run side by
   side, one in each mode; in ``--rounds`` interleaved rounds each gets ``--ack-writes``
   registrations one at a time through a service's owner (acknowledgement latency) and a wrk
   run of ``--seconds`` at 64 connections through the owner (throughput); medians per mode.

The beat sweeper is switched off for the run (``NAMING_SWEEP_ENABLED=false``): nothing here
beats. Every loop is bounded in count and time; the cluster is stopped by PID in ``finally``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import cpu_seconds_of, cycling_lua, rss_kb, save_results, wrk  # noqa: E402
from distro.mapper import DistroMapper  # noqa: E402
from testkit.harness import (  # noqa: E402
    CLUSTER_SECRET,
    NodeProcess,
    assert_converged,
    distro_status,
    leader_of,
    make_cluster,
    stop_cluster,
    wait_for,
)

GROUP = "DEFAULT_GROUP@@"
LIST_PATH = "/nacos/v1/ns/instance/list"
REGISTER_PATH = "/nacos/v1/ns/instance"

OWNED_LUA = cycling_lua("""
  local services = {%(services)s}
  for n = 1, 30000 do
    reqs[n] = wrk.format("POST", string.format(
      "/nacos/v1/ns/instance?serviceName=%%s&ip=10.%%d.%%d.%%d&port=%%d&accessToken=%%s",
      services[n %% #services + 1], 100 + tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n,
      "%(token)s"))
  end""")


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def healthy_members(node: NodeProcess) -> tuple[str, ...]:
    return tuple(distro_status(node)["healthyMembers"])


def owned_services(healthy: Iterable[str], owner: str, prefix: str, count: int) -> list[str]:
    """``count`` service names ``prefix-<i>`` whose Distro owner is ``owner``."""
    mapper = DistroMapper.of(owner, healthy)
    names: list[str] = []
    for i in range(count * 50):  # 1/3 of the names hit each member: 50x is plenty
        name = f"{prefix}-{i}"
        if mapper.owner(GROUP + name) == owner:
            names.append(name)
            if len(names) == count:
                return names
    raise RuntimeError(f"found only {len(names)} services owned by {owner}")


def sync_failures(nodes: list[NodeProcess]) -> tuple[int, set[str]]:
    """Failed sync batches so far, summed over every member and peer, and the last errors."""
    queues = [q for n in nodes for q in distro_status(n)["sync"].values()]
    errors = {str(q["lastError"])[:160] for q in queues if q["lastError"]}
    return sum(int(q["failures"]) for q in queues), errors


def wait_synced(nodes: list[NodeProcess], deadline_s: float = 60.0) -> bool:
    """Wait until no member has sync batches pending and all hold the same data.

    Returns False when the sync queues did not drain in time (a batch failing over and over;
    its error is in ``distro.sync`` of the member's metrics) although the verify round made the
    members converge; fails when they do not converge.
    """

    def idle() -> bool:
        return all(q["pending"] == 0 for n in nodes for q in distro_status(n)["sync"].values())

    try:
        wait_for(idle, deadline_s, interval_s=0.2, message="distro sync queues to drain")
        drained = True
    except AssertionError:
        drained = False
    assert_converged(nodes, deadline_s)
    return drained


def post_ok(conn: http.client.HTTPConnection, path: str, retries: int = 0) -> int:
    """POST and expect ``ok``; retries a 503 (member DOWN while Raft has no leader) up to
    ``retries`` times, 0.1 s apart. Returns how many 503s it saw."""
    for attempt in range(retries + 1):
        conn.request("POST", path)
        response = conn.getresponse()
        body = response.read()
        if response.status == 200 and body == b"ok":
            return attempt
        if response.status != 503 or attempt == retries:
            break
        time.sleep(0.1)
    raise RuntimeError(f"register failed: {response.status} {body[:200]!r}")


def raft_terms(nodes: list[NodeProcess]) -> list[int]:
    path = "/nacos/v1/ns/operator/cluster/state"
    return [int(n.request("GET", path).json()["raft"]["term"]) for n in nodes]


def cpu_seconds(nodes: list[NodeProcess]) -> dict[str, float]:
    """User + system CPU each member process has used so far."""
    used = {}
    for node in nodes:
        assert node.proc is not None
        used[node.address] = cpu_seconds_of(node.proc.pid)
    return used


# -- 1. replication latency ---------------------------------------------------------------------


class Probe:
    """One change being watched: the service and the bytes that prove the instance is there."""

    def __init__(self, service: str, marker: bytes, deadline_s: float) -> None:
        self.service = service
        self.marker = marker
        self.deadline = time.perf_counter() + deadline_s
        self.seen_at: float | None = None
        self.done = threading.Event()


class Watcher(threading.Thread):
    """Polls one member for the current probe; stamps the first answer that shows it."""

    def __init__(self, node: NodeProcess, token: str, poll_s: float) -> None:
        super().__init__(name=f"watch-{node.port}", daemon=True)
        self.node = node
        self.token = token
        self.poll_s = poll_s
        self.probe: Probe | None = None
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.polls = 0
        self.poll_seconds = 0.0  # summed request round trips (the stamp's resolution)

    def watch(self, probe: Probe) -> None:
        self.probe = probe
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(10)

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.node.host, self.node.port, timeout=10)
        try:
            while not self.stopping.is_set():
                self.wake.wait(1.0)
                self.wake.clear()
                probe = self.probe
                if probe is None:
                    continue
                self.probe = None
                self._poll(conn, probe)
        finally:
            conn.close()

    def _poll(self, conn: http.client.HTTPConnection, probe: Probe) -> None:
        path = f"{LIST_PATH}?serviceName={probe.service}&accessToken={self.token}"
        # Bounded by the probe's deadline (a few seconds) and the stop flag.
        while not self.stopping.is_set() and time.perf_counter() < probe.deadline:
            sent = time.perf_counter()
            conn.request("GET", path)
            body = conn.getresponse().read()
            now = time.perf_counter()
            self.polls += 1
            self.poll_seconds += now - sent
            if probe.marker in body:
                probe.seen_at = now
                break
            time.sleep(self.poll_s)
        probe.done.set()


def replication_latency(
    nodes: list[NodeProcess], changes: int, tag: str, poll_s: float
) -> dict[str, float]:
    healthy = healthy_members(nodes[0])
    tokens = {n.address: n.token() for n in nodes}
    services = {
        m: owned_services(healthy, m, f"lat-{tag}-{m.rpartition(':')[2]}", 20) for m in healthy
    }
    watchers = {n.address: Watcher(n, tokens[n.address], poll_s) for n in nodes}
    writers = {n.address: http.client.HTTPConnection(n.host, n.port, timeout=10) for n in nodes}
    from_send: list[float] = []
    from_ack: list[float] = []
    acks: list[float] = []
    timeouts = 0
    for watcher in watchers.values():
        watcher.start()
    try:
        for i in range(changes):
            owner = healthy[i % len(healthy)]
            service = services[owner][(i // len(healthy)) % len(services[owner])]
            ip, port = f"10.{60 + i // 62500}.{i // 250 % 250}.{i % 250}", 5000 + i % 1000
            marker = f'"ip":"{ip}","port":{port},'.encode()
            probes = [Probe(service, marker, 5.0) for _ in range(len(healthy) - 1)]
            peers = [m for m in healthy if m != owner]
            for peer, probe in zip(peers, probes, strict=True):
                watchers[peer].watch(probe)
            sent = time.perf_counter()
            post_ok(
                writers[owner],
                f"{REGISTER_PATH}?serviceName={service}&ip={ip}&port={port}"
                f"&accessToken={tokens[owner]}",
            )
            acked = time.perf_counter()
            for probe in probes:
                probe.done.wait(10.0)
            seen = [p.seen_at for p in probes]
            if any(s is None for s in seen):
                timeouts += 1
                continue
            last = max(s for s in seen if s is not None)
            from_send.append((last - sent) * 1000)
            from_ack.append((last - acked) * 1000)
            acks.append((acked - sent) * 1000)
    finally:
        for watcher in watchers.values():
            watcher.stop()
        for conn in writers.values():
            conn.close()
    from_send.sort()
    from_ack.sort()
    acks.sort()
    polls = sum(w.polls for w in watchers.values())
    round_trip = sum(w.poll_seconds for w in watchers.values()) / max(polls, 1)
    return {
        "changes": changes,
        "measured": len(from_send),
        "timeouts": timeouts,
        "p50_ms": percentile(from_send, 50),
        "p99_ms": percentile(from_send, 99),
        "max_ms": from_send[-1],
        "after_ack_p50_ms": percentile(from_ack, 50),
        "after_ack_p99_ms": percentile(from_ack, 99),
        "ack_p50_ms": percentile(acks, 50),
        "polls": polls,
        "poll_round_trip_ms": round_trip * 1000,
        "poll_resolution_ms": round_trip * 1000 + poll_s * 1000,
    }


# -- 2. owner vs non-owner throughput ---------------------------------------------------------


def register_throughput(
    nodes: list[NodeProcess], seconds: int, rounds: int, services: int
) -> dict[str, Any]:
    target = nodes[0]
    healthy = healthy_members(target)
    other = next(m for m in healthy if m != target.address)
    token = target.token()
    runs: dict[str, list[dict[str, float]]] = {"via_owner": [], "via_non_owner": []}
    sync_errors: set[str] = set()
    for r in range(rounds):
        for name, owner in (("via_owner", target.address), ("via_non_owner", other)):
            # Fresh services each run: a run never pays for the instances of the one before.
            names = owned_services(healthy, owner, f"tput-{r}-{name}", services)
            script = OWNED_LUA % {
                "token": token,
                "services": ",".join(f'"{n}"' for n in names),
            }
            wait_synced(nodes)
            failed, seen = sync_failures(nodes)
            before = cpu_seconds(nodes)
            row = wrk(target.base, seconds, script)
            # The replication of this run's writes is part of its cost.
            row["sync_drained"] = float(wait_synced(nodes))
            after = cpu_seconds(nodes)
            failed_after, errors = sync_failures(nodes)
            row["sync_failures"] = float(failed_after - failed)
            sync_errors |= errors - seen
            requests = row["rps"] * seconds
            for i, node in enumerate(nodes):
                # CPU per acknowledged write on member i (the target is member 0).
                row[f"cpu_ms_per_req_m{i}"] = (
                    (after[node.address] - before[node.address]) * 1000 / max(requests, 1)
                )
            runs[name].append(row)
            print(
                f"register {name:<14} round {r + 1}: {row['rps']:>6.0f} req/s  "
                f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  "
                f"non-2xx {row['non2xx']:.0f}  CPU ms/req on members "
                + " / ".join(f"{row[f'cpu_ms_per_req_m{i}']:.2f}" for i in range(len(nodes)))
                + f"  failed sync batches {row['sync_failures']:.0f}"
                + ("" if row["sync_drained"] else " (SYNC QUEUES STUCK)"),
                flush=True,
            )
    medians = {
        name: {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        for name, rows in runs.items()
    }
    ratios = [
        b["rps"] / a["rps"] for a, b in zip(runs["via_owner"], runs["via_non_owner"], strict=True)
    ]
    return {
        "target": target.address,
        "members": [n.address for n in nodes],
        "non_owner_forwards_to": other,
        "runs": runs,
        "median": medians,
        "ratio_non_owner_to_owner": medians["via_non_owner"]["rps"] / medians["via_owner"]["rps"],
        "ratio_per_pair_median": statistics.median(ratios),
        "sync_errors": sorted(sync_errors),
    }


# -- 4. sync-ack cost ------------------------------------------------------------------------


def ack_latency(nodes: list[NodeProcess], writes: int, tag: str) -> dict[str, float]:
    """``writes`` registrations one after another, each to its service's owner; ms per ack."""
    healthy = healthy_members(nodes[0])
    by_address = {n.address: n for n in nodes}
    services = {
        m: owned_services(healthy, m, f"ack-{tag}-{m.rpartition(':')[2]}", 20) for m in healthy
    }
    conns = {
        m: http.client.HTTPConnection(by_address[m].host, by_address[m].port, timeout=10)
        for m in healthy
    }
    tokens = {m: by_address[m].token() for m in healthy}
    took: list[float] = []
    unavailable = 0
    try:
        for i in range(writes):
            owner = healthy[i % len(healthy)]
            service = services[owner][i // len(healthy) % 20]
            sent = time.perf_counter()
            # A 503 (no peer confirmed in time) is retried, and its time counts in this write's.
            unavailable += post_ok(
                conns[owner],
                f"{REGISTER_PATH}?serviceName={service}&ip=10.{70 + i // 62500}.{i // 250 % 250}."
                f"{i % 250}&port={6000 + i % 1000}&accessToken={tokens[owner]}",
                retries=5,
            )
            took.append((time.perf_counter() - sent) * 1000)
    finally:
        for conn in conns.values():
            conn.close()
    took.sort()
    return {
        "p50_ms": percentile(took, 50),
        "p99_ms": percentile(took, 99),
        "max_ms": took[-1],
        "unavailable": float(unavailable),
    }


def sync_ack_cost(
    env: dict[str, str], rounds: int, writes: int, seconds: int, services: int
) -> dict[str, Any]:
    """Both modes on two clusters at once, rounds interleaved (same machine load for both)."""
    modes = {"default": "false", "sync_ack": "true"}
    bases = {m: Path(tempfile.mkdtemp(prefix=f"distro-bench-{m}-")) for m in modes}
    clusters: dict[str, list[NodeProcess]] = {}
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        for mode, flag in modes.items():
            clusters[mode] = make_cluster(
                bases[mode], 3, env={**env, "NAMING_DISTRO_SYNC_ACK": flag}
            )
        for r in range(rounds):
            for mode, nodes in clusters.items():
                row = ack_latency(nodes, writes, f"{r}")
                target = nodes[0]
                healthy = healthy_members(target)
                names = owned_services(healthy, target.address, f"acktput-{r}", services)
                script = OWNED_LUA % {
                    "token": target.token(),
                    "services": ",".join(f'"{n}"' for n in names),
                }
                wait_synced(nodes)
                tput = wrk(target.base, seconds, script)
                row.update({f"wrk_{k}": v for k, v in tput.items()})
                try:
                    row["sync_drained"] = float(wait_synced(nodes, 180))
                except AssertionError as exc:  # say so in the row; the other mode still runs
                    print(f"{mode} round {r + 1}: {exc}", flush=True)
                    row["sync_drained"] = -1.0
                acks = [distro_status(n)["syncAck"] for n in nodes]
                row["sync_ack_failed"] = float(sum(a["failed"] for a in acks if a))
                runs[mode].append(row)
                print(
                    f"{mode:<9} round {r + 1}: ack p50 {row['p50_ms']:.2f} ms  p99 "
                    f"{row['p99_ms']:.2f} ms; wrk {row['wrk_rps']:.0f} req/s  p50 "
                    f"{row['wrk_p50_ms']:.1f} ms  p99 {row['wrk_p99_ms']:.1f} ms  non-2xx "
                    f"{row['wrk_non2xx']:.0f}; sync-ack failures {row['sync_ack_failed']:.0f}",
                    flush=True,
                )
    finally:
        for nodes in clusters.values():
            stop_cluster(nodes)
        for base in bases.values():
            shutil.rmtree(base, ignore_errors=True)
    medians = {
        mode: {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        for mode, rows in runs.items()
    }
    return {"runs": runs, "median": medians}


# -- 3. startup snapshot ---------------------------------------------------------------------


def fill_via_owners(
    nodes: list[NodeProcess], services: int, per_service: int, threads_per_node: int = 2
) -> tuple[float, int]:
    """Register ``services * per_service`` instances, each sent to its service's owner.
    Returns the seconds it took and how many 503s (member DOWN) were retried."""
    healthy = healthy_members(nodes[0])
    mapper = DistroMapper.of(healthy[0], healthy)
    by_address = {n.address: n for n in nodes}
    tokens = {n.address: n.token() for n in nodes}
    work: dict[str, list[str]] = {m: [] for m in healthy}
    for s in range(services):
        owner = mapper.owner(f"{GROUP}snap-{s}")
        for i in range(per_service):
            work[owner].append(
                f"{REGISTER_PATH}?serviceName=snap-{s}&ip=10.9.{i // 250}.{i % 250}"
                f"&port={7000 + s}&accessToken={tokens[owner]}"
            )
    jobs = [
        (by_address[m], paths[t::threads_per_node])
        for m, paths in work.items()
        for t in range(threads_per_node)
    ]

    def send(job: tuple[NodeProcess, list[str]]) -> int:
        node, paths = job
        conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
        try:
            return sum(post_ok(conn, path, retries=100) for path in paths)
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(jobs)) as pool:
        unavailable = sum(pool.map(send, jobs))
    return time.perf_counter() - started, unavailable


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def snapshot_breakdown(source: NodeProcess, local: str) -> dict[str, float]:
    """Each step of loading a snapshot, timed in this process against a live member."""
    from consistency.notifier import Notifier
    from distro.protocol import SNAPSHOT_PATH, decode_batch, encode_batch
    from distro.store import DistroStore
    from distro.transport import HttpPeerTransport
    from lib.keys import peer_key as derive_key
    from naming.codec import DATUM_CODEC
    from naming.registry import Registry

    transport = HttpPeerTransport(local, derive_key(CLUSTER_SECRET))
    fetches = []
    body = b""
    for _ in range(3):
        response, seconds = timed(
            lambda: transport.call(source.address, "GET", SNAPSHOT_PATH, timeout=60)
        )
        assert response.ok, response.status
        body = response.body
        fetches.append(seconds)
    _, json_s = timed(lambda: json.loads(body))
    datums, decode_s = timed(lambda: decode_batch(body, DATUM_CODEC, allow_empty=True))
    _, encode_s = timed(lambda: encode_batch(datums, DATUM_CODEC))
    notifier = Notifier()
    store = DistroStore(notifier, DATUM_CODEC)
    registry = Registry(lambda key: None if (d := store.get(key)) is None else d.value)
    notifier.add_listener("registry", registry.on_datum)
    _, apply_s = timed(lambda: [store.apply_remote(d) for d in datums])
    _, rebuild_s = timed(notifier.drain)
    return {
        "datums": len(datums),
        "instances": registry.instance_count,
        "body_bytes": len(body),
        "fetch_s_median": statistics.median(fetches),
        "fetch_s_all": fetches,  # type: ignore[dict-item]
        "encode_s_in_process": encode_s,
        "decode_s": decode_s,
        "decode_json_loads_s": json_s,
        "store_apply_s": apply_s,
        "registry_rebuild_s": rebuild_s,
    }


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+ (.*)$")


def logged_at(log_path: Path, offset: int, since_wall: float) -> dict[str, float]:
    """Seconds after ``since_wall`` at which the node logged loading its snapshot and UP."""
    found: dict[str, float] = {}
    with open(log_path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        for line in log.read().splitlines():
            match = LOG_LINE.match(line)
            if match is None:
                continue
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            message = match.group(2)
            if message.startswith("loaded ") and " datums from " in message:
                found.setdefault("loaded", when - since_wall)
            elif message.startswith("node ") and message.endswith(" is UP"):
                found.setdefault("up", when - since_wall)
    return found


def snapshot_load(nodes: list[NodeProcess], instances: int, services: int) -> dict[str, Any]:
    per_service = max(1, instances // services)
    terms_before = raft_terms(nodes)
    fill_s, unavailable = fill_via_owners(nodes, services, per_service)
    terms_after = raft_terms(nodes)
    total = services * per_service
    print(
        f"filled {total} instances in {fill_s:.1f} s ({unavailable} answers 503 'server is DOWN',"
        f" retried; raft terms {terms_before} -> {terms_after})",
        flush=True,
    )
    wait_synced(nodes, 180)
    counts = [
        n.request("GET", "/nacos/v1/ns/operator/metrics").json()["instanceCount"] for n in nodes
    ]
    leader = leader_of(nodes)
    victim = next(n for n in nodes if n is not leader)
    survivors = [n for n in nodes if n is not victim]
    rss_before = {n.address: rss_kb(n.proc.pid) for n in nodes if n.proc is not None}
    victim.kill9()
    # INFO on the restarted member only: its log then dates the snapshot and UP (below).
    victim.env["NAMING_LOG_LEVEL"] = "INFO"
    log_offset = victim.log_path.stat().st_size
    started, started_wall = time.perf_counter(), time.time()
    victim.start(wait=False)
    listening: list[float] = []

    def up() -> bool:
        assert victim.proc is not None and victim.proc.poll() is None, victim.log()
        answer = victim.request("GET", "/nacos/v1/ns/operator/metrics", timeout=5).json()
        if not listening:
            listening.append(time.perf_counter() - started)
        return bool(answer["status"] == "UP")

    wait_for(up, 180, interval_s=0.02, message="restarted member UP")
    to_up = time.perf_counter() - started
    victim.wait_up(10)  # forgets the old token
    metrics = victim.request("GET", "/nacos/v1/ns/operator/metrics").json()
    snap = metrics["distro"]["snapshot"] or {}
    time.sleep(1)
    rss_after = {n.address: rss_kb(n.proc.pid) for n in nodes if n.proc is not None}
    logged = logged_at(victim.log_path, log_offset, started_wall)
    phases = {
        "http_answers": listening[0] if listening else None,
        "snapshot_started": logged["loaded"] - snap["seconds"] if "loaded" in logged else None,
        "snapshot_loaded": logged.get("loaded"),
        "up_logged": logged.get("up"),
        "up_seen": to_up,
    }
    result: dict[str, Any] = {
        "instances": total,
        "services": services,
        "fill_s": fill_s,
        "fill_503_retried": unavailable,
        "raft_terms_before_fill": terms_before,
        "raft_terms_after_fill": terms_after,
        "instance_counts_before": counts,
        "victim": victim.address,
        "snapshot_source": snap.get("source"),
        "snapshot_datums": snap.get("datums"),
        "snapshot_seconds": snap.get("seconds"),
        "process_start_to_http_s": listening[0] if listening else None,
        "process_start_to_up_s": to_up,
        "instance_count_after": metrics["instanceCount"],
        "restart_phases_s": phases,
        "rss_kb_before_kill": rss_before,
        "rss_kb_after_restart": rss_after,
    }
    print(
        f"snapshot: {snap.get('datums')} datums from {snap.get('source')} in "
        f"{snap.get('seconds')} s; {metrics['instanceCount']} instances; seconds after process "
        "start: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v is not None),
        flush=True,
    )
    breakdown = snapshot_breakdown(survivors[0], victim.address)
    result["breakdown"] = breakdown
    b = breakdown
    print(
        "snapshot steps (this process, same data): "
        f"fetch (server encode + HTTP) {b['fetch_s_median']:.2f} s for "
        f"{b['body_bytes'] / 1e6:.1f} MB, encode alone {b['encode_s_in_process']:.2f} s, "
        f"decode {b['decode_s']:.2f} s (json.loads {b['decode_json_loads_s']:.2f} s), "
        f"store apply {b['store_apply_s']:.2f} s, "
        f"registry rebuild {b['registry_rebuild_s']:.2f} s",
        flush=True,
    )
    return result


def on_fresh_cluster(env: dict[str, str], phases: Callable[[list[NodeProcess]], None]) -> None:
    """Run ``phases`` on a new 3-member cluster; stop it by PID whatever happens."""
    base = Path(tempfile.mkdtemp(prefix="distro-bench-"))
    nodes = make_cluster(base, 3, env=env)
    finished = False
    try:
        phases(nodes)
        finished = True
    finally:
        stop_cluster(nodes)
        if finished:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"node logs kept in {base}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--latency-runs", type=int, default=2)
    parser.add_argument("--poll-ms", type=float, default=1.0)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--tput-services", type=int, default=1000, help="services per throughput run"
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--ack-writes", type=int, default=500)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["latency", "throughput", "snapshot", "sync-ack"]
    )
    args = parser.parse_args()
    if not {"throughput", "sync-ack"} <= set(args.skip) and shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    # The watchers stamp on wake-up: a short GIL switch interval keeps a busy thread from
    # delaying a stamp by the default 5 ms.
    sys.setswitchinterval(0.0005)
    env = {
        "NAMING_LOG_LEVEL": "WARNING",
        "NAMING_HEALTH_CHECK_NETWORKS": "192.0.2.0/24",
        "NAMING_SWEEP_ENABLED": "false",
        **{k: v for k, v in os.environ.items() if k.startswith("NAMING_")},
    }
    results: dict[str, Any] = {}

    def latency_and_throughput(nodes: list[NodeProcess]) -> None:
        if "latency" not in args.skip:
            results["replication"] = []
            for run in range(args.latency_runs):
                row = replication_latency(nodes, args.changes, str(run), args.poll_ms / 1000)
                results["replication"].append(row)
                print(
                    f"replication run {run + 1}: {row['measured']} changes, p50 "
                    f"{row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  max "
                    f"{row['max_ms']:.1f} ms (after the ack: p50 {row['after_ack_p50_ms']:.1f}, "
                    f"p99 {row['after_ack_p99_ms']:.1f}); timeouts {row['timeouts']}; poll "
                    f"resolution {row['poll_resolution_ms']:.2f} ms",
                    flush=True,
                )
        if "throughput" not in args.skip:
            tput = register_throughput(nodes, args.seconds, args.rounds, args.tput_services)
            results["register"] = tput
            for name, row in tput["median"].items():
                print(
                    f"median {name:<14} {row['rps']:>6.0f} req/s  p50 {row['p50_ms']:.1f} ms  "
                    f"p99 {row['p99_ms']:.1f} ms",
                    flush=True,
                )
            print(
                f"non-owner / owner: {tput['ratio_non_owner_to_owner']:.2f} (per-pair median "
                f"{tput['ratio_per_pair_median']:.2f})",
                flush=True,
            )
            for error in tput["sync_errors"]:
                print(f"failed sync batch: {error}", flush=True)

    def snapshot(nodes: list[NodeProcess]) -> None:
        results["snapshot"] = snapshot_load(nodes, args.instances, args.services)

    if not {"latency", "throughput"} <= set(args.skip):
        on_fresh_cluster(env, latency_and_throughput)
    if "snapshot" not in args.skip:
        # A fresh cluster: the snapshot then holds exactly --instances instances.
        on_fresh_cluster(env, snapshot)
    if "sync-ack" not in args.skip:
        ack = sync_ack_cost(env, args.rounds, args.ack_writes, args.seconds, args.tput_services)
        results["sync_ack"] = ack
        for mode, row in ack["median"].items():
            print(
                f"median {mode:<9} ack p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms; "
                f"wrk {row['wrk_rps']:.0f} req/s  p50 {row['wrk_p50_ms']:.1f} ms  "
                f"p99 {row['wrk_p99_ms']:.1f} ms",
                flush=True,
            )
    save_results("distro.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
