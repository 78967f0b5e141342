"""``python3 dev.py bench`` companion for issue #4: a 3-member Raft cluster on loopback.

Measures persistent registrations at 64 connections (wrk) sent to the leader and to a follower
(pysyncobj forwards to the leader), with the durable journal on, and the failover time: kill -9
of the leader → first successful write through a survivor, over ``--trials`` kills.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import cycling_lua, save_results, wrk  # noqa: E402
from testkit.harness import (  # noqa: E402
    kill_leader_and_time_failover,
    leader_of,
    make_cluster,
    stop_cluster,
    wait_for,
)

PERSISTENT_LUA = cycling_lua("""
  for n = 1, 30000 do
    reqs[n] = wrk.format("POST", string.format(
      "/nacos/v1/ns/instance?serviceName=raft-bench-%%s-%%d&ip=127.%%d.%%d.%%d&port=%%d"
      .. "&ephemeral=false&accessToken=%%s",
      "%(tag)s", n %% 50, tid, math.floor(n / 250) %% 250, n %% 250, 1000 + n, "%(token)s"))
  end""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="raft-bench-"))
    env = {
        "NAMING_LOG_LEVEL": "WARNING",
        "NAMING_HEALTH_CHECK_NETWORKS": "192.0.2.0/24",
        **{k: v for k, v in os.environ.items() if k.startswith("NAMING_")},
    }
    nodes = make_cluster(base, 3, env=env)
    results: dict[str, object] = {}
    try:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)

        def caught_up() -> bool:
            states = [
                n.request("GET", "/nacos/v1/ns/operator/cluster/state").json()["raft"]
                for n in nodes
            ]
            return len({s["lastApplied"] for s in states}) == 1

        for name, target in (("via_leader", leader), ("via_follower", follower)):
            # Under sustained load the slowest follower falls behind (a majority commits
            # without it); let it catch up so each run starts from the same place.
            wait_for(caught_up, 120, interval_s=0.2, message="followers caught up")
            script = PERSISTENT_LUA % {"token": target.token(), "tag": name}
            row = wrk(target.base, args.seconds, script)
            results[name] = row
            print(
                f"persistent register {name:<13} {row['rps']:>7.0f} req/s  "
                f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  "
                f"non-2xx {row['non2xx']:.0f}",
                flush=True,
            )
        # Staleness of follower reads: leader acknowledges, how long until a follower shows it.
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        lags = []
        for n in range(50):
            name = f"stale-{n}"
            assert leader.api("POST", "/service", {"serviceName": name}).status == 200
            acked = time.monotonic()
            wait_for(
                lambda f=follower, nm=name: (
                    f.api("GET", "/service", {"serviceName": nm}).status == 200
                ),
                30,
                interval_s=0.001,
                message="follower catches up",
            )
            lags.append(time.monotonic() - acked)
        lags.sort()
        results["follower_staleness_ms"] = {"p50": lags[24] * 1000, "max": lags[-1] * 1000}
        print(
            f"follower read staleness (idle cluster): p50 {lags[24] * 1000:.1f} ms, "
            f"max {lags[-1] * 1000:.1f} ms",
            flush=True,
        )
        failovers = []
        for trial in range(args.trials):
            leader, seconds = kill_leader_and_time_failover(nodes)
            failovers.append(seconds)
            print(f"failover {trial + 1}: {failovers[-1]:.3f} s", flush=True)
            leader.start()
        results["failover_s"] = {
            "median": statistics.median(failovers),
            "max": max(failovers),
            "all": failovers,
        }
        print(f"failover median {statistics.median(failovers):.3f} s, max {max(failovers):.3f} s")
    finally:
        stop_cluster(nodes)
    save_results("raft.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
