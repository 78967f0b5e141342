"""The pure parts of bench-serving: /proc parsing, the process tree, rotation, the tables and
the tiny WSGI app it serves (called directly: no server runs here)."""

from __future__ import annotations

import math
from typing import Any

from bench import serving_app
from bench.serving import (
    CANDIDATES,
    answered,
    command,
    descendants,
    format_idle,
    format_table,
    parse_points,
    parse_stat,
    rotated,
    status_field,
    summarize,
)

# A command name with a space and a parenthesis: fields count from the last ")".
STAT = "4242 (granian (w) x) S 4200 4242 4200 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 6 0 1 2 3"


def test_parse_stat_reads_parent_and_cpu_ticks_past_odd_command_names() -> None:
    assert parse_stat(STAT) == (4200, 22)


def test_descendants_walks_the_tree_below_the_root_only() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert descendants(parents, 10) == [10, 11, 12, 13]
    assert descendants(parents, 21) == [21]
    assert descendants({}, 7) == [7]


def test_status_field_reads_threads_and_rss() -> None:
    text = "Name:\tpython\nVmRSS:\t   26628 kB\nThreads:\t17\n"
    assert status_field(text, "Threads") == 17
    assert status_field(text, "VmRSS") == 26628


def test_rotated_starts_one_further_each_round() -> None:
    names = ["a", "b", "c"]
    assert [rotated(names, r)[0] for r in range(4)] == ["a", "b", "c", "a"]
    assert sorted(rotated(names, 2)) == names


def test_answered_needs_the_whole_body() -> None:
    assert answered(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert not answered(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")
    assert not answered(b"HTTP/1.1 503 Busy\r\n\r\nok")


def test_command_per_candidate() -> None:
    granian = command("granian_bt8", 9000)
    assert granian[granian.index("--blocking-threads") + 1] == "8"
    assert granian[granian.index("--interface") + 1] == "wsgi"
    assert command("naming_pool", 9000)[-3:] == ["naming-pool", "--port", "9000"]
    assert all(command(name, 9000) for name in CANDIDATES)


def _run(round_index: int, candidate: str, rps: float, **extra: float) -> dict[str, object]:
    return {
        "round": round_index,
        "workload": "mixed",
        "connections": 64,
        "candidate": candidate,
        "rps": rps,
        "p50_ms": 1.0,
        "p99_ms": rps / 100,
        "cpu_us_per_req": 100.0,
        "errors": 1.0,
        **extra,
    }


def test_summarize_takes_medians_sums_errors_and_keeps_candidate_order() -> None:
    runs = [
        _run(0, "naming_loop", 7000, slow_rps=70),
        _run(0, "waitress", 200, slow_rps=38),
        _run(1, "waitress", 300, slow_rps=40),
        _run(2, "waitress", 250, slow_rps=39),
    ]
    table = summarize(runs)
    assert [row["candidate"] for row in table] == ["waitress", "naming_loop"]
    waitress = table[0]
    assert (waitress["rps"], waitress["p99_ms"], waitress["slow_rps"]) == (250, 2.5, 39)
    assert (waitress["errors"], waitress["rounds"]) == (3, 3)
    text = format_table(table)
    assert "waitress" in text.splitlines()[1] and "39" in text.splitlines()[1]


def test_format_idle_shows_threads_rss_probe_and_sigterm() -> None:
    row = {
        "wanted": 5000,
        "held": 5000,
        "before": {"threads": 17, "rss_kb": 26 * 1024},
        "after": {"threads": 17, "rss_kb": 40 * 1024},
        "probe_median_ms": 0.7,
        "probe_max_ms": None,
        "sigterm": {"exit_code": None, "seconds": 15.0},
    }
    line = format_idle({"naming_loop": row}, {"naming_loop": True}).splitlines()[1]
    assert "5000/5000" in line and "17->17" in line and "26->40" in line
    assert "hung 15.0s" in line and line.rstrip().endswith("yes")
    row["held_after_65s"] = 0
    line = format_idle({"granian_bt8": row}, {}).splitlines()[1]
    assert line.endswith("0 @65s") and " no " in line


def _call(path: str) -> tuple[str, dict[str, str], bytes]:
    seen: list[Any] = []
    body = b"".join(
        serving_app.application({"PATH_INFO": path}, lambda s, h: seen.extend([s, dict(h)]))
    )
    return seen[0], seen[1], body


def test_app_routes_set_content_length() -> None:
    for path, status in (("/empty", "200 OK"), ("/work", "200 OK"), ("/pid", "200 OK")):
        got, headers, body = _call(path)
        assert got == status and int(headers["Content-Length"]) == len(body)
    got, headers, body = _call("/nope")
    assert got.startswith("404") and int(headers["Content-Length"]) == len(body)


def test_spin_and_calibrate_are_bounded_and_positive() -> None:
    assert serving_app.spin(0) == 0 and isinstance(serving_app.spin(1000), int)
    spins = serving_app.calibrate(target_s=1e-5, trials=1)
    assert spins >= 1 and not math.isnan(spins)


def test_parse_points() -> None:
    assert parse_points("empty:16, mixed:64") == [("empty", 16), ("mixed", 64)]
