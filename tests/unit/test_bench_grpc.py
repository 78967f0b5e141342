"""The pure parts of the gRPC bench (bench/grpc.py): payloads, percentiles, medians and ratios,
round rotation and the keepalive spread. The load itself is a benchmark, never a test."""

from __future__ import annotations

import math

import pytest

from bench.grpc import (
    answer_ok,
    cpu_pct,
    host_count,
    keepalive_offsets,
    medians,
    percentile,
    ratio_medians,
    register_request,
    request,
    rotated,
    subscribe_request,
    summarize_ms,
)
from facades.nacos_v2 import wire


def test_a_request_carries_the_token_in_both_places_the_sdk_puts_it() -> None:
    sent = wire.decode(request("HealthCheckRequest", {}, "tok"))
    assert sent.type == "HealthCheckRequest"
    assert sent.headers == {"accessToken": "tok"}
    assert sent.body["headers"] == {"accessToken": "tok"}
    assert wire.decode(request("HealthCheckRequest", {})).headers == {}


def test_register_and_subscribe_bodies() -> None:
    reg = wire.decode(register_request(70_000, "svc", kind="deregisterInstance")).body
    assert reg["type"] == "deregisterInstance"
    assert reg["serviceName"] == "svc" and reg["groupName"] == "DEFAULT_GROUP"
    assert reg["instance"]["ip"] == "10.1.17.112" and reg["instance"]["ephemeral"] is True
    distinct = {wire.decode(register_request(i, "s")).body["instance"]["ip"] for i in range(600)}
    assert len(distinct) == 600
    sub = wire.decode(subscribe_request("svc", subscribe=False)).body
    assert sub["subscribe"] is False and sub["clusters"] == ""


def test_answer_ok_reads_the_result_code_of_the_edges_answers() -> None:
    ok = wire.encode("X", {"resultCode": 200, "errorCode": 0, "message": ""})
    failed = wire.encode("X", {"resultCode": 500, "errorCode": 301, "message": ""})
    assert answer_ok(ok) and not answer_ok(failed) and not answer_ok(b"\x00garbage")


def test_host_count_of_a_push() -> None:
    assert host_count({"serviceInfo": {"hosts": [{}, {}]}}) == 2
    assert host_count({"serviceInfo": {"hosts": []}}) == 0
    assert host_count({}) == 0 and host_count({"serviceInfo": "x"}) == 0


def test_percentile_is_nearest_rank_in_any_order() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    summary = summarize_ms([0.001, 0.002, 0.003])
    assert summary["count"] == 3
    assert summary["p50_ms"] == pytest.approx(2.0) and summary["max_ms"] == pytest.approx(3.0)
    assert math.isnan(summarize_ms([])["p99_ms"])


def test_rotation_moves_the_first_target_each_round() -> None:
    names = ["floor", "a", "b"]
    assert [rotated(names, r)[0] for r in range(4)] == ["floor", "a", "b", "floor"]
    assert sorted(rotated(names, 2)) == sorted(names)
    assert rotated([], 3) == []


def test_medians_and_per_round_ratios() -> None:
    rounds = [
        {"floor": {"calls_per_s": 100.0}, "reg": {"calls_per_s": 50.0}},
        {"floor": {"calls_per_s": 200.0}, "reg": {"calls_per_s": 60.0}},
        {"floor": {"calls_per_s": 80.0}, "reg": {"calls_per_s": 40.0}},
    ]
    # The median of the per-round ratios (0.5, 0.3, 0.5), not a ratio of medians.
    assert ratio_medians(rounds, "floor") == {"reg": pytest.approx(0.5)}
    assert medians([r["reg"] for r in rounds]) == {"calls_per_s": 50.0}


def test_keepalives_are_spread_over_one_interval() -> None:
    offsets = keepalive_offsets(2000, 5.0)
    assert len(offsets) == 2000 and offsets[0] == 0.0
    assert max(offsets) < 5.0
    assert offsets[1] - offsets[0] == pytest.approx(0.0025)


def test_cpu_percentages_from_samples() -> None:
    assert cpu_pct([(0.0, 0.0), (1.0, 0.25), (3.0, 0.75), (3.0, 0.8)]) == [25.0, 25.0]
