"""Fault rounds on a 3-member Raft cluster: no acknowledged write is ever lost.

The members run as test hosts in their own network namespaces (``testkit/netns.py``; needs root,
as CI has). A writer registers persistent instances through every member and records each one
the cluster acknowledged (``ok``). Each round injects one fault under that load, heals it, waits
for the cluster to settle, and then requires every acknowledged write on every member, with all
members agreeing. Rounds: kill -9 the leader; kill -9 a follower and restart it; kill -9 all
three and restart them; cut one member's network (the leader, then a follower) and heal it.
While the old leader is cut off, a client inside its namespace writes to it and must not get
``ok``.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from testkit.harness import (
    NodeProcess,
    kill_leader_and_time_failover,
    leader_of,
    make_cluster,
    probe_write,
    stop_cluster,
    wait_for,
)
from testkit.netns import NetnsLab

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("raft-faults")]

SERVICE = "ledger"
ROUNDS = [
    "kill-leader",
    "kill-follower",
    "kill-all",
    "isolate-leader",
    "kill-leader",
    "kill-follower",
    "kill-all",
    "isolate-follower",
    "kill-leader",
    "isolate-leader",
]

# A client inside the isolated member's namespace: prints "<status> <body>" of one write.
INSIDE_WRITE = """
import sys, urllib.error, urllib.parse, urllib.request
url, params = sys.argv[1], urllib.parse.urlencode(dict(a.split("=", 1) for a in sys.argv[2:]))
try:
    with urllib.request.urlopen(urllib.request.Request(url + "?" + params, method="POST"),
                                timeout=30) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


class Writer:
    """Writes unique persistent instances round-robin; keeps the acknowledged ones."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self.acked: set[int] = set()
        self.attempts = 0
        self._ports = itertools.count(1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                port = next(self._ports)
                self.attempts += 1
            node = random.choice(self.nodes)
            params = urllib.parse.urlencode(
                {
                    "serviceName": SERVICE,
                    "ip": "127.0.0.1",
                    "port": port,
                    "ephemeral": "false",
                    "username": "nacos",
                    "password": node.admin_password,
                }
            )
            request = urllib.request.Request(
                f"{node.base}/nacos/v1/ns/instance?{params}", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 200 and response.read() == b"ok":
                        with self._lock:
                            self.acked.add(port)
            except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException):
                time.sleep(0.05)  # member down or no quorum: not acknowledged


def ports_on(node: NodeProcess) -> set[int] | None:
    result = node.request(
        "GET",
        "/nacos/v1/ns/instance/list",
        {
            "serviceName": SERVICE,
            "healthyOnly": "false",
            "username": "nacos",
            "password": node.admin_password,
        },
        timeout=5,
    )
    if result.status != 200:
        return None
    return {h["port"] for h in result.json()["hosts"]}


def settled(nodes: list[NodeProcess], acked: set[int]) -> bool:
    seen = [ports_on(n) for n in nodes]
    return all(s is not None and acked <= s for s in seen) and all(s == seen[0] for s in seen)


def inject(round_name: str, nodes: list[NodeProcess], lab: NetnsLab) -> float | None:
    """Run one fault; returns the failover time (s) for leader kills, else None."""
    leader = leader_of(nodes)
    followers = [n for n in nodes if n is not leader]
    if round_name == "kill-leader":
        leader, failover = kill_leader_and_time_failover(nodes)
        time.sleep(1)
        leader.start(wait=False)
        return failover
    if round_name == "kill-follower":
        victim = random.choice(followers)
        victim.kill9()
        time.sleep(2)
        victim.start(wait=False)
    elif round_name == "kill-all":
        for node in nodes:
            node.kill9()
        time.sleep(0.5)
        for node in nodes:
            node.start(wait=False)
    elif round_name.startswith("isolate-"):
        victim = leader if round_name == "isolate-leader" else random.choice(followers)
        index = nodes.index(victim)
        lab.isolate(index)
        try:
            if victim is leader:
                # The cut-off leader may still believe it leads: its own clients get no "ok".
                started = time.monotonic()
                answer = subprocess.run(
                    [
                        *lab.host(index)[1],
                        sys.executable,
                        "-c",
                        INSIDE_WRITE,
                        f"{victim.base}/nacos/v1/ns/instance",
                        "serviceName=" + SERVICE,
                        "ip=127.9.9.9",
                        f"port={random.randint(1, 60000)}",
                        "ephemeral=false",
                        "username=nacos",
                        f"password={victim.admin_password}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout.strip()
                print(f"isolated leader answered its own client: {answer[:80]}")
                assert not answer.startswith("200"), answer
                assert answer.startswith("503"), answer
                assert time.monotonic() - started < 15
            # The majority side elects a leader and keeps accepting writes.
            others = [n for n in nodes if n is not victim]
            wait_for(
                functools.partial(probe_write, others[0]),
                30,
                interval_s=0.1,
                message="majority side writable",
            )
            time.sleep(1)
        finally:
            lab.heal(index)
    return None


def test_no_acknowledged_write_is_lost_across_fault_rounds(tmp_path: Path, lab: NetnsLab):
    nodes = make_cluster(
        tmp_path,
        3,
        env={"NAMING_HEALTH_CHECK_NETWORKS": "192.0.2.0/24"},
        hosts=[lab.host(i) for i in range(3)],
    )
    failovers: list[float] = []
    all_acked: set[int] = set()
    try:
        for number, round_name in enumerate(ROUNDS, 1):
            writer = Writer(nodes)
            writer.start()
            time.sleep(1.5)
            failover = inject(round_name, nodes, lab)
            time.sleep(1.5)
            writer.stop()
            for node in nodes:
                node.wait_up(60)
            assert writer.acked, f"round {number} ({round_name}) acknowledged nothing"
            all_acked |= writer.acked
            wait_for(
                functools.partial(settled, nodes, set(all_acked)),
                30,
                interval_s=0.5,
                message=f"round {number} ({round_name}): {len(all_acked)} acked everywhere",
            )
            if failover is not None:
                failovers.append(failover)
        print(
            json.dumps(
                {
                    "rounds": len(ROUNDS),
                    "acked": len(all_acked),
                    "failover_s": [round(f, 3) for f in failovers],
                }
            )
        )
    finally:
        stop_cluster(nodes)
