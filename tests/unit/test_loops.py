"""The loop helper and the listener list: survive, count, stop promptly."""

from __future__ import annotations

import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from lib.counters import REGISTRY
from lib.listeners import ListenerList
from lib.loops import LoopTracker, PeriodicLoop
from testkit.harness import wait_for


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_loop_survives_exceptions_and_counts_runs_failures_and_the_last_error():
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        if len(calls) % 2 == 0:
            raise ValueError(f"bad round {len(calls)}")

    loop = PeriodicLoop("test-survives", body, 0.01, owner="test", first_delay_s=0)
    loop.start()
    try:
        wait_for(lambda: loop.runs >= 6, 5, interval_s=0.01, message="six rounds")
    finally:
        loop.stop()
    assert loop.alive is False
    assert loop.failures >= 3
    assert loop.runs - loop.failures >= 3
    assert loop.last_error.startswith("ValueError: bad round")
    assert loop.tracker.last_run_at > 0


def test_loop_counts_are_exported_in_the_registry():
    loop = PeriodicLoop("test-exported", lambda: 1 / 0, 60, owner="test")
    before = sample("naming_loop_runs_total", loop="test-exported") or 0.0
    assert loop.run_once() is False
    assert loop.run_once() is False
    assert sample("naming_loop_runs_total", loop="test-exported") == before + 2
    assert sample("naming_loop_failures_total", loop="test-exported") == before + 2
    assert sample("naming_loop_duration_seconds_count", loop="test-exported") == before + 2
    assert (sample("naming_loop_last_failure_timestamp_seconds", loop="test-exported") or 0) > 0


def test_stop_ends_a_loop_waiting_for_its_next_round_promptly():
    loop = PeriodicLoop("test-stops", lambda: None, 3600, owner="test", first_delay_s=0)
    loop.start()
    wait_for(lambda: loop.runs == 1, 5, interval_s=0.01, message="the first round")
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < 0.5
    assert loop.alive is False


def test_a_shared_stop_event_stops_every_loop_before_its_first_round():
    stop = threading.Event()
    loops = [
        PeriodicLoop(f"test-shared-{i}", lambda: None, 3600, owner="test", stop_event=stop)
        for i in range(3)
    ]
    for loop in loops:
        loop.start()
    stop.set()
    for loop in loops:
        loop.join(1)
        assert loop.alive is False
        assert loop.runs == 0


def test_a_wake_event_cuts_the_interval_short():
    wake = threading.Event()
    loop = PeriodicLoop("test-wake", lambda: None, 3600, owner="test", first_delay_s=0, wake=wake)
    loop.start()
    try:
        wait_for(lambda: loop.runs == 1, 5, interval_s=0.01, message="the first round")
        wake.set()
        wait_for(lambda: loop.runs == 2, 5, interval_s=0.01, message="a woken round")
    finally:
        loop.stop()
    assert loop.alive is False


def test_the_error_hook_sees_each_failure_and_its_own_failure_is_contained():
    seen: list[str] = []

    def hook(exc: BaseException) -> None:
        seen.append(str(exc))
        raise RuntimeError("hook broke too")

    tracker = LoopTracker("test-hook")
    assert tracker.run(lambda: int("x"), hook) is False
    assert tracker.run(lambda: None, hook) is True
    assert len(seen) == 1
    assert (tracker.runs, tracker.failures) == (2, 1)


def test_failures_are_logged_once_per_period_with_a_count_of_the_rest(caplog):
    tracker = LoopTracker("test-ratelimit", log_every_s=3600)
    for _ in range(5):
        tracker.run(lambda: 1 / 0)
    logged = [r for r in caplog.records if "test-ratelimit" in r.getMessage()]
    assert len(logged) == 1
    assert tracker.failures == 5


def test_a_failing_listener_is_isolated_and_counted_per_listener():
    listeners: ListenerList[int] = ListenerList("test-source")
    seen: list[int] = []
    broken = listeners.add("broken", lambda n: 1 / 0)
    listeners.add("rec", seen.append)
    assert listeners.call(1) == 1
    assert listeners.call(2) == 1
    assert seen == [1, 2]
    assert (broken.calls, broken.failures) == (2, 2)
    assert "ZeroDivisionError" in broken.last_error
    assert sample("naming_listener_failures_total", source="test-source", listener="broken") == 2
    assert sample("naming_listener_calls_total", source="test-source", listener="rec") == 2


def test_the_registry_exposition_parses_with_prometheus_clients_own_parser():
    from prometheus_client import generate_latest

    LoopTracker("test-parse").run(lambda: None)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())
    }
    assert families["naming_loop_runs"].type == "counter"
    assert families["naming_loop_duration_seconds"].type == "summary"
    assert families["naming_http_request_duration_seconds"].type == "histogram"


def test_a_log_throttle_admits_one_line_per_interval_and_counts_the_rest():
    from lib.ratelimit import LogThrottle

    clock = [100.0]
    throttle = LogThrottle(10.0, clock=lambda: clock[0])
    assert throttle.admit() == 0  # the first line goes out at once
    assert throttle.admit() is None and throttle.admit() is None
    clock[0] += 9.9
    assert throttle.admit() is None
    clock[0] += 0.1
    assert throttle.admit() == 3  # the three held back since the last line
    assert throttle.admit() is None
