"""The pure parts of the capacity bench (bench/capacity.py): the beat schedule, the summaries
and the response parser. The load itself is a benchmark, never a test."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from bench.capacity import (
    Sample,
    Schedule,
    cpu_percentages,
    parse_response,
    summarize_ms,
    window_figures,
)


def test_every_instance_beats_once_per_interval_spread_evenly() -> None:
    schedule = Schedule(start=100.0, interval=5.0, instances=20_000)
    assert schedule.step == pytest.approx(0.00025)  # 4,000 beats/s
    slots = schedule.slots_before(100.0 + 10.0)
    assert slots == 40_000
    # Each instance twice in 10 s, exactly one interval apart.
    assert set(Counter(schedule.instance(j) for j in range(slots)).values()) == {2}
    for i in (0, 1, 12_345, 19_999):
        assert schedule.due(i + 20_000) - schedule.due(i) == pytest.approx(5.0)
    # Flat: every 100 ms of the interval holds the same number of beats.
    edges = [schedule.slots_before(100.0 + k / 10) for k in range(51)]
    assert {b - a for a, b in itertools.pairwise(edges)} == {400}


def test_slots_before_counts_due_times_strictly_before() -> None:
    schedule = Schedule(start=0.0, interval=1.0, instances=3)
    assert schedule.slots_before(0.0) == 0
    assert schedule.slots_before(-1.0) == 0
    assert schedule.slots_before(1e-9) == 1
    assert schedule.slots_before(1.0) == 3  # slot 3 is due at exactly 1.0
    assert schedule.slots_before(1.0 + 1e-9) == 4
    for t in (0.1, 0.33, 0.34, 0.66, 0.67, 2.5, 119.999):
        n = schedule.slots_before(t)
        assert schedule.due(n - 1) < t <= schedule.due(n)


def test_summary_is_nearest_rank_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms
    summary = summarize_ms(list(reversed(values)))
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50.0)
    assert summary["p99_ms"] == pytest.approx(99.0)
    assert summary["max_ms"] == pytest.approx(100.0)
    assert summarize_ms([0.002])["p99_ms"] == pytest.approx(2.0)
    empty = summarize_ms([])
    assert empty["count"] == 0 and math.isnan(empty["p99_ms"])


def test_cpu_percent_per_interval() -> None:
    samples = [(0.0, 10.0), (1.0, 10.5), (3.0, 10.9), (3.0, 11.0)]
    assert cpu_percentages(samples) == pytest.approx([50.0, 20.0])  # a zero-length pair is skipped


def test_window_figures_per_beat_and_per_second() -> None:
    samples = [
        Sample(tick=k, t=float(k), node_cpu=0.4 * k, own_cpu=0.05 * k, answered=2000 * k)
        for k in range(10)
    ]
    figures = window_figures(samples, 2, 7)
    assert figures["seconds"] == pytest.approx(5.0)
    assert figures["beats"] == 10_000
    assert figures["node_median_pct"] == pytest.approx(40.0)
    assert figures["node_mean_pct"] == pytest.approx(40.0)
    assert figures["node_per_beat_us"] == pytest.approx(200.0)
    assert figures["own_per_beat_us"] == pytest.approx(25.0)
    with pytest.raises(ValueError):
        window_figures(samples, 20, 30)


def test_parse_response_waits_for_the_whole_body() -> None:
    body = b'{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}'
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCONTENT-LENGTH: "
        + str(len(body)).encode()
        + b"\r\nServer: x\r\n\r\n"
        + body
    )
    for cut in (0, 10, raw.index(b"\r\n\r\n") + 2, len(raw) - 1):
        assert parse_response(raw[:cut]) is None
    assert parse_response(raw + b"HTTP/1.1 ...") == (200, body, len(raw))
    assert parse_response(b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n") == (503, b"", 38)
    with pytest.raises(ValueError):
        parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok")


def test_parse_response_reads_a_chunked_body() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\nA;x=1\r\n0123456789\r\n0\r\n\r\n"
    )
    for cut in range(len(raw)):
        assert parse_response(raw[:cut]) is None
    assert parse_response(raw + b"HTTP/1.1") == (200, b"ok0123456789", len(raw))
