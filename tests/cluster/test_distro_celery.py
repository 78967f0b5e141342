"""Distro sync through Celery on a real ``redis-server`` with a real ``celery -A server worker``.

Two 3-member clusters share one Redis and one worker (tasks name their source and peer):

* ``TestCeleryDelivers``: the verify interval is 300 s, so no verify round runs during the class
  (``verifyRounds`` stays 0, asserted): whatever reaches a peer was carried by a Celery task.
* ``TestOutages``: verify every second, as a deployment would rely on; the worker or Redis is
  taken away mid-run and the outage must show in metrics and logs, lose nothing, and heal.

Each test that stops a service starts it again in ``finally``; services are distinct per test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from distro.dispatch import BROKER_BACKOFF_S
from testkit.harness import (
    CLUSTER_SECRET,
    NodeProcess,
    assert_converged,
    distro_status,
    free_port,
    running_cluster,
    wait_for,
)
from testkit.services import CeleryWorker, RedisServer

pytestmark = pytest.mark.xdist_group("distro-celery")

# Instances live far longer than this module runs: no expiry changes data under a test.
LONG_LIVED = json.dumps(
    {"preserved.heart.beat.timeout": "600000", "preserved.ip.delete.timeout": "600000"}
)
TASK_LINE = re.compile(
    r"Task distro\.sync_datums\[([0-9a-f-]+)\] (succeeded|retry: Retry in [0-9.]+s)"
)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the Celery tests (apt-get install redis-server)")
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[CeleryWorker]:
    started = CeleryWorker(Path(tmp_path_factory.mktemp("worker")), redis.url, CLUSTER_SECRET)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def celery_cluster(
    base: Path, redis: RedisServer, verify_s: int
) -> contextlib.AbstractContextManager[list[NodeProcess]]:
    return running_cluster(
        base,
        3,
        env={
            "NAMING_REDIS_URL": redis.url,
            "NAMING_DISTRO_VERIFY_INTERVAL_S": str(verify_s),
            "NAMING_MEMBER_REPORT_INTERVAL_S": "1",
        },
    )


# -- helpers -------------------------------------------------------------------------------


def register(node: NodeProcess, service: str, port: int) -> None:
    result = node.api(
        "POST",
        "/instance",
        {"serviceName": service, "ip": "10.0.0.1", "port": port, "metadata": LONG_LIVED},
    )
    assert (result.status, result.text) == (200, "ok"), f"{node.address}: {result.text}"


def ports_listed(node: NodeProcess, service: str) -> set[int]:
    result = node.api("GET", "/instance/list", {"serviceName": service})
    return {h["port"] for h in result.json()["hosts"]} if result.status == 200 else set()


def listed_everywhere(nodes: list[NodeProcess], expected: dict[str, int]) -> bool:
    return all(ports_listed(n, svc) == {port} for n in nodes for svc, port in expected.items())


def wait_listed_everywhere(
    nodes: list[NodeProcess], expected: dict[str, int], deadline_s: float = 15
) -> None:
    wait_for(
        functools.partial(listed_everywhere, nodes, expected),
        deadline_s,
        interval_s=0.1,
        message=f"{sorted(expected)} listed on every member",
    )


def dispatch(node: NodeProcess) -> dict[str, Any]:
    return dict(distro_status(node)["dispatch"])


def total(nodes: list[NodeProcess], field: str) -> int:
    return sum(int(dispatch(n)[field]) for n in nodes)


def read_log(node: NodeProcess) -> str:
    return node.log_path.read_text(errors="replace")


def task_lines(worker: CeleryWorker) -> list[tuple[str, str]]:
    return TASK_LINE.findall(worker.log_path.read_text(errors="replace"))


def every_member_sees_redis_down(nodes: list[NodeProcess], port: int) -> bool:
    statuses = [dispatch(n) for n in nodes]
    return all(s["workers"] is None and f":{port}" in str(s["lastError"]) for s in statuses)


def every_member_reports(nodes: list[NodeProcess], workers: int, queued_nonempty: bool) -> bool:
    for node in nodes:
        status = dispatch(node)
        if status["workers"] != workers or status["queued"] is None:
            return False
        if bool(status["queued"]) != queued_nonempty:
            return False
    return True


# -- Celery carries the sync -----------------------------------------------------------------


@pytest.fixture(scope="class")
def celery_only(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer, worker: CeleryWorker
) -> Iterator[list[NodeProcess]]:
    with celery_cluster(Path(tmp_path_factory.mktemp("celery-only")), redis, 300) as started:
        yield started


class TestCeleryDelivers:
    def test_an_instance_registered_on_one_member_reaches_the_others_through_celery_tasks(
        self, celery_only: list[NodeProcess], worker: CeleryWorker
    ):
        enqueued_before = total(celery_only, "enqueued")
        tasks_before = len(task_lines(worker))

        register(celery_only[0], "celery-delivered", 8001)

        wait_listed_everywhere(celery_only, {"celery-delivered": 8001}, deadline_s=10)
        statuses = [distro_status(n) for n in celery_only]
        assert {s["dispatch"]["mode"] for s in statuses} == {"celery"}
        # The owner sent one task to each of its two peers; nothing went in-process.
        assert total(celery_only, "enqueued") - enqueued_before >= 2
        assert total(celery_only, "fallbackDeliveries") == 0
        assert total(celery_only, "brokerErrors") == 0
        assert [s["verifyRounds"] for s in statuses] == [0, 0, 0]
        assert sum(s["received"]["synced"] for s in statuses) >= 2

        def succeeded() -> bool:
            done = [state for _, state in task_lines(worker)[tasks_before:]]
            return done.count("succeeded") >= 2

        # The worker logs a task's success once it has read the peer's answer: after the peer
        # stored (and may already list) the instance.
        try:
            wait_for(succeeded, 10, interval_s=0.1, message="two sync tasks logged as succeeded")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.log()}") from None

    def test_sync_tasks_wait_in_redis_while_no_worker_runs_and_all_arrive_once_it_is_back(
        self, celery_only: list[NodeProcess], redis: RedisServer, worker: CeleryWorker
    ):
        expected = {f"celery-queued-{i}": 8100 + i for i in range(6)}
        worker.stop()
        try:
            for i, (service, port) in enumerate(expected.items()):
                register(celery_only[i % 3], service, port)
            wait_for(lambda: redis.queue_length() > 0, 10, message="sync tasks queued in redis")
            # Nobody else can deliver them: each service is listed by its owner only.
            time.sleep(0.5)
            for service, port in expected.items():
                holders = [n.address for n in celery_only if ports_listed(n, service) == {port}]
                assert len(holders) == 1, (service, holders)
            assert total(celery_only, "fallbackDeliveries") == 0
        finally:
            worker.start()

        wait_listed_everywhere(celery_only, expected)
        assert_converged(celery_only)
        wait_for(lambda: redis.queue_length() == 0, 10, message="the queue drained")
        assert [distro_status(n)["verifyRounds"] for n in celery_only] == [0, 0, 0]


def test_a_task_to_an_unreachable_peer_is_retried_with_backoff_then_given_up(
    redis: RedisServer, worker: CeleryWorker
):
    producer = Celery("test-producer", broker=redis.url)
    dead_peer = f"127.0.0.1:{free_port()}"
    try:
        task_id = producer.send_task(
            "distro.sync_datums", args=("127.0.0.1:1", dead_peer, '{"datums":[]}')
        ).id
    finally:
        producer.close()

    def finished() -> list[str]:
        states = [state for tid, state in task_lines(worker) if tid == task_id]
        return states if "succeeded" in states else []

    states = wait_for(finished, 20, interval_s=0.2, message="the task to give up")
    assert states == [
        "retry: Retry in 0.5s",
        "retry: Retry in 1.0s",
        "retry: Retry in 2.0s",
        "retry: Retry in 4.0s",
        "succeeded",
    ]
    assert f"-> {dead_peer} given up" in worker.log_path.read_text()


# -- outages -------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def with_verify(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer, worker: CeleryWorker
) -> Iterator[list[NodeProcess]]:
    with celery_cluster(Path(tmp_path_factory.mktemp("celery-verify")), redis, 1) as started:
        yield started


class TestOutages:
    def test_every_member_counts_the_running_worker_and_an_empty_queue(
        self, with_verify: list[NodeProcess]
    ):
        wait_for(
            functools.partial(every_member_reports, with_verify, 1, queued_nonempty=False),
            10,
            message="workers == 1 and queued == 0 on every member",
        )

    def test_with_the_worker_stopped_registrations_succeed_and_members_report_the_backlog(
        self, with_verify: list[NodeProcess], worker: CeleryWorker
    ):
        expected = {f"worker-down-{i}": 8200 + i for i in range(3)}
        worker.stop()
        try:
            for i, (service, port) in enumerate(expected.items()):
                register(with_verify[i], service, port)
            wait_for(
                functools.partial(every_member_reports, with_verify, 0, queued_nonempty=True),
                10,
                message="workers == 0 and queued > 0 on every member",
            )
            # Logged by the check round just after it counted the workers (and queued tasks).
            for node in with_verify:
                wait_for(
                    functools.partial(lambda n: "no celery worker answers" in read_log(n), node),
                    10,
                    message=f"the missing worker in {node.address}'s log",
                )
        finally:
            worker.start()

        wait_for(
            functools.partial(every_member_reports, with_verify, 1, queued_nonempty=False),
            15,
            message="the worker back and the queue drained on every member",
        )
        wait_listed_everywhere(with_verify, expected)
        assert_converged(with_verify)

    def test_with_redis_stopped_sync_is_delivered_in_process_and_the_broker_error_is_visible(
        self, with_verify: list[NodeProcess], redis: RedisServer, worker: CeleryWorker
    ):
        expected = {f"redis-down-{i}": 8300 + i for i in range(3)}
        errors_before = total(with_verify, "brokerErrors")
        fallback_before = total(with_verify, "fallbackDeliveries")
        for node in with_verify:
            node.token()  # log in first: a login's password hash is not what is timed here
        redis.stop()
        try:
            started = time.monotonic()
            for i, (service, port) in enumerate(expected.items()):
                register(with_verify[i], service, port)
            assert time.monotonic() - started < 3, "registration waited for the broker"
            wait_listed_everywhere(with_verify, expected, deadline_s=10)
            assert total(with_verify, "brokerErrors") > errors_before
            assert total(with_verify, "fallbackDeliveries") > fallback_before
            # Every member's next check round fails too and says why (no worker count then).
            wait_for(
                functools.partial(every_member_sees_redis_down, with_verify, redis.port),
                5,
                message="the broker error in every member's metrics",
            )
            logs = [n.log_path.read_text() for n in with_verify]
            assert any("celery broker refused a sync task" in text for text in logs)
            assert_converged(with_verify)
        finally:
            redis.start()

    def test_once_redis_is_back_sync_tasks_are_enqueued_again(
        self, with_verify: list[NodeProcess], redis: RedisServer, worker: CeleryWorker
    ):
        errors_before = total(with_verify, "brokerErrors")
        during = {f"redis-back-{i}": 8400 + i for i in range(10)}
        registered: dict[str, int] = {}

        def refused() -> bool:
            # A member that fell back less than BROKER_BACKOFF_S ago does not try the broker:
            # register once a second until some owner has been refused by the dead Redis.
            service, port = list(during.items())[len(registered)]
            register(with_verify[len(registered) % 3], service, port)
            registered[service] = port
            return total(with_verify, "brokerErrors") > errors_before

        redis.stop()
        try:
            wait_for(refused, 9, interval_s=1, message="a broker error")
            refused_at = time.monotonic()
        finally:
            redis.start()
        # The worker reconnects on its own; members see it at their next check round.
        wait_for(
            functools.partial(every_member_reports, with_verify, 1, queued_nonempty=False),
            20,
            message="the worker reconnected",
        )
        time.sleep(max(0.0, refused_at + BROKER_BACKOFF_S + 0.5 - time.monotonic()))

        enqueued_before = total(with_verify, "enqueued")
        fallback_before = total(with_verify, "fallbackDeliveries")
        expected = {f"redis-again-{i}": 8500 + i for i in range(3)}
        for i, (service, port) in enumerate(expected.items()):
            register(with_verify[i], service, port)

        wait_for(
            lambda: total(with_verify, "enqueued") >= enqueued_before + 2,
            5,
            message="sync tasks enqueued again",
        )
        wait_listed_everywhere(with_verify, {**registered, **expected})
        assert total(with_verify, "fallbackDeliveries") == fallback_before
        assert_converged(with_verify)
