"""The pure parts of the benchmarks: wrk's summary as numbers, and bench-peers' table."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.peers import format_table, rotation, summarize
from bench.run import parse_wrk

WRK_OUT = """\
Running 1s test @ http://127.0.0.1:18777/nonexistent
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.22ms   12.57ms  86.74ms   92.49%
    Req/Sec   602.80    281.02     0.94k    70.00%
  Latency Distribution
     50%  650.00us
     75%    9.19ms
     90%   16.95ms
     99%    1.20s
  604 requests in 1.01s, 306.72KB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 17
Requests/sec:    598.83
Transfer/sec:    304.09KB
lua registrations: 42
"""


def test_parse_wrk_reads_counts_latencies_errors_and_script_lines() -> None:
    row = parse_wrk(WRK_OUT)
    assert row["rps"] == 598.83
    assert row["requests"] == 604
    assert row["seconds"] == pytest.approx(1.01)
    assert row["p50_ms"] == pytest.approx(0.65)
    assert row["p99_ms"] == pytest.approx(1200.0)
    assert row["non2xx"] == 17
    assert row["socket_errors"] == 5
    assert row["registrations"] == 42


def test_parse_wrk_without_errors_or_latency_lines() -> None:
    out = "  10 requests in 2.00s, 1KB read\nRequests/sec:      5.00\n"
    row = parse_wrk(out)
    assert (row["non2xx"], row["socket_errors"], row["seconds"]) == (0, 0, 2.0)
    assert math.isnan(row["p50_ms"])
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def run(round_: int, target: str, ops_s: float, workload: str = "beat") -> dict[str, Any]:
    return {
        "round": round_,
        "workload": workload,
        "connections": 16,
        "target": target,
        "ops_s": ops_s,
        "p50_ms": 1.0 + round_,
        "p99_ms": 10.0,
        "cpu_us_per_op": 100.0 * (round_ + 1),
    }


def test_summarize_takes_medians_and_per_round_ratios() -> None:
    runs = [
        # etcd drifts between rounds; the node's ratio to it is taken round by round.
        *(run(r, "etcd", v) for r, v in enumerate((1000.0, 2000.0, 4000.0))),
        *(run(r, "node_auth_off", v) for r, v in enumerate((1500.0, 2000.0, 2000.0))),
        *(run(r, "node_auth_on", v) for r, v in enumerate((1500.0, 1000.0, 1800.0))),
    ]
    table = {row["target"]: row for row in summarize(runs)}
    assert [row["target"] for row in summarize(runs)] == ["etcd", "node_auth_off", "node_auth_on"]
    assert table["etcd"]["ops_s"] == 2000.0
    assert table["etcd"]["cpu_us_per_op"] == 200.0
    assert table["node_auth_off"]["ratio_to_etcd"] == 1.0  # median of 1.5, 1.0, 0.5
    assert table["node_auth_on"]["ratio_to_etcd"] == 0.5  # median of 1.5, 0.5, 0.45
    assert table["node_auth_on"]["auth_cost"] == 0.9  # median of 1.0, 0.5, 0.9
    assert "auth_cost" not in table["node_auth_off"]


def test_table_marks_goals_per_workload() -> None:
    runs = [
        run(0, "etcd", 1000.0, "list"),
        run(0, "node_auth_off", 3100.0, "list"),  # list goal: 3x
        run(0, "node_auth_on", 2900.0, "list"),
    ]
    lines = format_table(summarize(runs)).splitlines()
    assert "ok" in lines[2] and "3.10" in lines[2]
    assert "MISS" in lines[3] and "0.94" in lines[3]


def test_rotation_moves_the_first_target_each_round() -> None:
    firsts = [rotation(r)[0] for r in range(3)]
    assert sorted(firsts) == ["etcd", "node_auth_off", "node_auth_on"]
    assert all(sorted(rotation(r)) == sorted(firsts) for r in range(5))
