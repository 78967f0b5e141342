"""``GET /metrics`` on a real node: Prometheus text that prometheus-client's own parser reads,
with the loop and listener counters and the hot-endpoint latency histograms."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.harness import NodeProcess, running_node, wait_for

# Every periodic loop of a standalone node runs within a fraction of a second.
FAST_LOOPS = {
    "NAMING_SWEEP_INTERVAL_S": "0.1",
    "NAMING_HEALTH_CHECK_INTERVAL_S": "0.1",
    "NAMING_EMPTY_SERVICE_CLEAN_INITIAL_S": "0.1",
    "NAMING_EMPTY_SERVICE_CLEAN_PERIOD_S": "0.1",
}
STANDALONE_LOOPS = ("beat-sweeper", "health-check", "auto-clean", "push-timer")
QUEUE_LOOPS = ("notifier", "raft-batcher")  # count batches, once there were writes
HOT = "/nacos/v1/ns/instance"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def fast_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(Path(tmp_path_factory.mktemp("prometheus")), env=FAST_LOOPS) as node:
        yield node


def scrape(node: NodeProcess) -> tuple[str, Samples]:
    result = node.request("GET", "/metrics")
    assert result.status == 200, result.text
    samples: Samples = {}
    for family in text_string_to_metric_families(result.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result.headers["Content-Type"], samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_counted(samples: Samples, route: str, method: str) -> float:
    return value(samples, "naming_http_request_duration_seconds_count", route=route, method=method)


def test_metrics_is_prometheus_text_without_credentials(fast_node: NodeProcess):
    content_type, samples = scrape(fast_node)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert value(samples, "naming_up") == 1.0
    assert ("naming_services", frozenset()) in samples


def test_every_loop_of_a_node_counts_its_rounds(fast_node: NodeProcess):
    fast_node.api(  # a persistent write: the raft batcher and the notifier carry it
        "POST",
        "/instance",
        {"serviceName": "prom-loops", "ip": "127.0.0.1", "port": 9, "ephemeral": "false"},
    )

    def all_ran() -> Samples | None:
        _, samples = scrape(fast_node)
        ran = all(
            value(samples, "naming_loop_runs_total", loop=loop) > 0
            for loop in STANDALONE_LOOPS + QUEUE_LOOPS
        )
        return samples if ran else None

    samples = wait_for(all_ran, 15, interval_s=0.2, message="every loop to run")
    assert samples is not None
    for loop in STANDALONE_LOOPS + QUEUE_LOOPS:
        assert ("naming_loop_failures_total", frozenset({("loop", loop)})) in samples
        assert value(samples, "naming_loop_duration_seconds_count", loop=loop) > 0
        assert value(samples, "naming_loop_last_run_timestamp_seconds", loop=loop) > 0


def test_listener_counters_are_exported_per_listener(fast_node: NodeProcess):
    fast_node.api(
        "POST", "/instance", {"serviceName": "prom-listeners", "ip": "10.0.0.1", "port": 1}
    )
    _, samples = scrape(fast_node)
    for source, listener in (("notifier", "registry"), ("registry", "push")):
        labels = {"source": source, "listener": listener}
        assert value(samples, "naming_listener_calls_total", **labels) > 0
        assert value(samples, "naming_listener_failures_total", **labels) == 0


def test_the_hot_endpoints_latency_histograms_count_each_request(fast_node: NodeProcess):
    _, before = scrape(fast_node)
    service = {"serviceName": "prom-hot"}
    instance = {**service, "ip": "10.0.0.2", "port": 2}
    for _ in range(3):
        assert fast_node.api("POST", "/instance", instance).status == 200
    beat = json.dumps({**instance, "serviceName": "DEFAULT_GROUP@@prom-hot"})
    for _ in range(4):
        assert fast_node.api("PUT", "/instance/beat", {**service, "beat": beat}).status == 200
    for _ in range(5):
        assert fast_node.api("GET", "/instance/list", service).status == 200
    assert fast_node.api("PUT", "/instance", {**instance, "weight": 2}).status == 200
    assert fast_node.api("DELETE", "/instance", instance).status == 200
    _, after = scrape(fast_node)

    for route, method, count in (
        (HOT, "POST", 3),
        (HOT + "/beat", "PUT", 4),
        (HOT + "/list", "GET", 5),
        (HOT, "PUT", 1),
        (HOT, "DELETE", 1),
    ):
        made = requests_counted(after, route, method) - requests_counted(before, route, method)
        assert made == count, (route, method)
        bucket = value(
            after,
            "naming_http_request_duration_seconds_bucket",
            route=route,
            method=method,
            le="+Inf",
        )
        assert bucket == requests_counted(after, route, method)
    # Everything else (here: the first scrape itself) lands in one coarse series.
    assert requests_counted(after, "other", "GET") > requests_counted(before, "other", "GET")
