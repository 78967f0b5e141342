"""Service leaders on a real node (issue #13, item 4): the oldest healthy instance leads;
deregistration and heartbeat expiry hand over to the next oldest, in order; a pinned leader
stays while others come and go; unpinning returns to the oldest."""

from __future__ import annotations

import json
import time
from typing import Any

from testkit.harness import NodeProcess, wait_for

# Beat-based instances that expire quickly: unhealthy 3 s after their last beat, removed after
# 6 s. The test beats the ones it keeps every 0.25 s, far inside the timeout on a loaded box.
SHORT_LIFE = json.dumps(
    {"preserved.heart.beat.timeout": "3000", "preserved.ip.delete.timeout": "6000"}
)


def ip(n: int) -> str:
    return f"10.40.0.{n}"


def register(node: NodeProcess, svc: str, n: int, **extra: Any) -> None:
    answer = node.api("POST", "/instance", {"serviceName": svc, "ip": ip(n), "port": 80, **extra})
    assert answer.status == 200, answer.text


def deregister(node: NodeProcess, svc: str, n: int) -> None:
    answer = node.api("DELETE", "/instance", {"serviceName": svc, "ip": ip(n), "port": 80})
    assert answer.status == 200, answer.text


def leader(node: NodeProcess, svc: str) -> tuple[str | None, bool]:
    """(the leader's ip, pinned), or (None, False) on a 404 (no healthy instance)."""
    answer = node.api("GET", "/service/leader", {"serviceName": svc})
    if answer.status == 404:
        return None, False
    assert answer.status == 200, answer.text
    body = answer.json()
    return str(body["ip"]), bool(body["pinned"])


def test_the_oldest_leads_and_deregistration_hands_over_in_order(
    node: NodeProcess, svc: str
) -> None:
    assert node.api("GET", "/service/leader", {"serviceName": svc}).status == 404
    for n in (1, 2, 3, 4):
        register(node, svc, n)
    assert leader(node, svc) == (ip(1), False)
    register(node, svc, 1, weight=3)  # a re-register keeps its seniority
    assert leader(node, svc) == (ip(1), False)
    seen = []
    for n in (1, 3, 2):  # 3 is not the leader when it leaves: nothing changes then
        deregister(node, svc, n)
        seen.append(leader(node, svc)[0])
    assert seen == [ip(2), ip(2), ip(4)]
    deregister(node, svc, 4)
    assert leader(node, svc) == (None, False)


def beat(node: NodeProcess, svc: str, n: int) -> None:
    node.api("PUT", "/instance/beat", {"serviceName": svc, "ip": ip(n), "port": 80})


def beating_until(
    node: NodeProcess, svc: str, kept: tuple[int, ...], wanted: str | None, deadline_s: float
) -> list[str | None]:
    """Beat ``kept`` every 0.25 s until ``wanted`` leads; returns the leaders seen, in order
    (each change once). Bounded by ``deadline_s``."""
    seen: list[str | None] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for n in kept:
            beat(node, svc, n)
        now = leader(node, svc)[0]
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == wanted:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{wanted} never led; leaders seen: {seen}")


def test_expiry_hands_over_to_the_next_oldest_and_a_comeback_is_the_youngest(
    node: NodeProcess, svc: str
) -> None:
    for n in (1, 2, 3):
        register(node, svc, n, metadata=SHORT_LIFE)
    assert leader(node, svc) == (ip(1), False)
    # 1 stops beating: unhealthy after its timeout, and 2 takes over (then 1 is removed).
    assert beating_until(node, svc, (2, 3), ip(2), 30.0) == [ip(1), ip(2)]
    # 2 stops too: 3 takes over.
    assert beating_until(node, svc, (3,), ip(3), 30.0) == [ip(2), ip(3)]

    def gone() -> bool:
        beat(node, svc, 3)
        hosts = node.api("GET", "/instance/list", {"serviceName": svc}).json()["hosts"]
        return [h["ip"] for h in hosts] == [ip(3)]

    wait_for(gone, 30.0, interval_s=0.25, message="1 and 2 removed after their delete timeout")
    register(node, svc, 1, metadata=SHORT_LIFE)  # back, but registered after 3
    beat(node, svc, 3)
    assert leader(node, svc) == (ip(3), False)
    for n in (1, 3):
        deregister(node, svc, n)


def pin(node: NodeProcess, svc: str, n: int) -> None:
    answer = node.api("PUT", "/service/leader", {"serviceName": svc, "ip": ip(n), "port": 80})
    assert (answer.status, answer.text) == (200, "ok")


def unpin(node: NodeProcess, svc: str) -> None:
    answer = node.api("DELETE", "/service/leader", {"serviceName": svc})
    assert (answer.status, answer.text) == (200, "ok")


def test_a_pinned_leader_stays_and_unpinning_returns_to_the_oldest(
    node: NodeProcess, svc: str
) -> None:
    for n in (1, 2, 3):
        register(node, svc, n)
    pin(node, svc, 3)
    assert leader(node, svc) == (ip(3), True)
    register(node, svc, 4)
    deregister(node, svc, 1)
    assert leader(node, svc) == (ip(3), True)
    # Away, the pinned instance leads no more; back, it leads again (the pin waited).
    deregister(node, svc, 3)
    assert leader(node, svc) == (ip(2), False)
    register(node, svc, 3)
    assert leader(node, svc) == (ip(3), True)
    unpin(node, svc)
    assert leader(node, svc) == (ip(2), False)
    unpin(node, svc)  # idempotent
    missing = node.api("PUT", "/service/leader", {"serviceName": svc, "ip": ip(9), "port": 80})
    assert missing.status == 404 and "no instance" in missing.text
    bad = node.api("PUT", "/service/leader", {"serviceName": svc, "ip": ip(2), "port": "x"})
    assert bad.status == 400
