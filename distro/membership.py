"""Cluster membership: who is alive, as each member sees it, and the ownership map built on it.

Every ``REPORT_INTERVAL_S`` each member POSTs its own state to every other member
(``/nacos/v1/core/cluster/report``, signed) and reads the receiver's state from the answer, so one
round teaches both sides. Nacos reports to one member per round, round-robin; with the small
clusters we run, reporting to all finds a dead member within one interval instead of n.

States follow Nacos's thresholds: a member that reported (or answered) is UP, or STARTING while it
has not loaded its data yet; each failed report makes it SUSPICIOUS; more than
``MAX_FAILURES`` in a row, or a refused connection, make it DOWN. Distro ownership counts the
members that are UP or SUSPICIOUS (as Nacos's ``healthyList``), never a STARTING one: a member
that has not loaded the snapshot must not own keys.

Thread: ``member-report`` (a ``lib.loops.PeriodicLoop``, counted as
``naming_loop_*{loop="member-report"}``) is owned by :class:`Membership`, started by the
runtime, stopped by ``stop()`` (an Event, then join).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from distro.mapper import DistroMapper
from distro.transport import PeerTransport, PeerUnreachable
from lib.listeners import ListenerList
from lib.loops import PeriodicLoop

log = logging.getLogger(__name__)

REPORT_PATH = "/nacos/v1/core/cluster/report"
REPORT_INTERVAL_S = 2.0
MAX_FAILURES = 3  # nacos.core.member.fail-access-cnt


class MemberState(StrEnum):
    STARTING = "STARTING"
    UP = "UP"
    SUSPICIOUS = "SUSPICIOUS"
    DOWN = "DOWN"


HEALTHY = (MemberState.UP, MemberState.SUSPICIOUS)


@dataclass
class MemberInfo:
    address: str
    state: MemberState = MemberState.STARTING
    fail_count: int = 0
    last_report_ms: int = 0  # wall clock of the last report from it or answer by it; 0: never
    distro_ready: bool = False
    version: str = ""


class Membership:
    def __init__(
        self,
        local: str,
        members: tuple[str, ...],
        transport: PeerTransport,
        self_state: Callable[[], MemberState],
        version: str = "",
        interval_s: float = REPORT_INTERVAL_S,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.local = local
        self.members = tuple(sorted(set(members) | {local}))
        self._transport = transport
        self._self_state = self_state
        self._version = version
        self._interval = interval_s
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._peers = {m: MemberInfo(m) for m in self.members if m != local}
        # Nobody owns anything until this member is UP and has heard from its peers.
        self._mapper = DistroMapper.of(local, ())
        self._listeners: ListenerList[DistroMapper] = ListenerList("membership")
        self._stop = threading.Event()
        self._loop: PeriodicLoop | None = None
        self.reports_sent = 0
        self.reports_failed = 0

    # -- ownership ---------------------------------------------------------------------------

    @property
    def mapper(self) -> DistroMapper:
        return self._mapper

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def add_listener(self, listener: Callable[[DistroMapper], None], name: str = "") -> None:
        """Called (on the thread that noticed) whenever the ownership map changes; isolated
        and counted as ``naming_listener_*{source="membership", listener=name}`` (``name``
        defaults to the function's name)."""
        self._listeners.add(name or getattr(listener, "__name__", "").strip("_") or "?", listener)

    def _build_mapper(self) -> DistroMapper:
        healthy = [m for m, info in self._peers.items() if info.state in HEALTHY]
        if self._self_state() is MemberState.UP:
            healthy.append(self.local)
        return DistroMapper.of(self.local, healthy)

    def refresh(self) -> None:
        """Recompute ownership (after a state change here, or when this node becomes UP)."""
        with self._lock:
            mapper = self._build_mapper()
            changed = mapper.healthy != self._mapper.healthy
            self._mapper = mapper
        if changed:
            log.info("distro members now %s", ", ".join(mapper.healthy) or "(none)")
            self._listeners.call(mapper, "the new ownership map")  # isolated: never stops us

    # -- state changes -----------------------------------------------------------------------

    def on_report(self, sender: str, report: dict[str, Any]) -> None:
        """A member told us its state (its report, or its answer to ours)."""
        info = self._peers.get(sender)
        if info is None:
            return
        try:
            state = MemberState(str(report.get("state", "UP")))
        except ValueError:
            state = MemberState.UP
        if state is MemberState.SUSPICIOUS:
            state = MemberState.UP  # it answered: it is alive, whatever others think of it
        with self._lock:
            info.state = state
            info.fail_count = 0
            info.last_report_ms = self._wall_ms()
            info.distro_ready = state is MemberState.UP
            extend = report.get("extendInfo")
            info.version = str(extend.get("version", "")) if isinstance(extend, dict) else ""
        self.refresh()

    def on_failure(self, peer: str, refused: bool) -> None:
        info = self._peers.get(peer)
        if info is None:
            return
        with self._lock:
            info.fail_count += 1
            info.distro_ready = False
            if refused or info.fail_count > MAX_FAILURES:
                info.state = MemberState.DOWN
            elif info.state is not MemberState.DOWN:
                info.state = MemberState.SUSPICIOUS
        self.refresh()

    def state_of(self, peer: str) -> MemberState:
        info = self._peers.get(peer)
        return MemberState.DOWN if info is None else info.state

    def info(self, peer: str) -> MemberInfo | None:
        """A copy of what we know of ``peer`` (None for a stranger)."""
        with self._lock:
            info = self._peers.get(peer)
            return None if info is None else dataclasses.replace(info)

    # -- reporting ---------------------------------------------------------------------------

    def self_report(self) -> dict[str, Any]:
        host, _, port = self.local.rpartition(":")
        return {
            "ip": host,
            "port": int(port),
            "address": self.local,
            "state": self._self_state().value,
            "extendInfo": {"version": self._version},
        }

    def report_once(self) -> None:
        body = json.dumps(self.self_report()).encode()
        for peer in self.peers:
            if self._stop.is_set() and self._self_state() is not MemberState.DOWN:
                return
            self.reports_sent += 1
            try:
                response = self._transport.call(
                    peer,
                    "POST",
                    REPORT_PATH,
                    body,
                    {"Content-Type": "application/json"},
                    timeout=1.5,
                )
            except PeerUnreachable as exc:
                self.reports_failed += 1
                self.on_failure(peer, exc.refused)
                continue
            if not response.ok:
                self.reports_failed += 1
                log.warning("member %s refused our report: %s", peer, response.status)
                self.on_failure(peer, refused=False)
                continue
            try:
                answer = json.loads(response.body)
                self.on_report(peer, answer.get("data") or {})
            except (ValueError, AttributeError):
                self.on_failure(peer, refused=False)

    def start(self) -> None:
        self._loop = PeriodicLoop(
            "member-report",
            self.report_once,
            self._interval,
            owner="Membership",
            first_delay_s=0,
            stop_event=self._stop,
        )
        self._loop.start()

    def stop(self) -> None:
        """Stop reporting, then tell the peers we are leaving so they re-map at once."""
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=2)
        self.report_once()
