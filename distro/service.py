"""Distro in cluster mode: the ephemeral consistency service of one member, wired together.

``DistroCluster`` is what the consistency delegate sees for ephemeral keys. A local change is
applied by the store (on the owner: HTTP forwarding sent the write here) and marked for every
peer's sync thread; peer datums arrive through :class:`~distro.protocol.PeerProtocol`. Before the
member serves, :meth:`load_snapshot` pulls every datum from a peer that is UP.

Threads are owned by the parts: ``member-report`` (membership), ``distro-sync-<peer>``
(scheduler), ``distro-verify`` (verify loop). ``start()`` starts them, ``stop()`` stops them in
reverse order and finally tells the peers this member is leaving. ``mark_ready`` starts one
short-lived ``report-ready`` thread that sends a single report round and ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from consistency.datum import Datum, DatumCodec, DatumKey
from consistency.notifier import Notifier
from consistency.service import Applied, Change
from distro.dispatch import CeleryDispatcher, DirectDispatcher, Dispatcher
from distro.membership import Membership, MemberState
from distro.protocol import (
    CHANGE_PATH,
    SNAPSHOT_PATH,
    TOUCH_PATH,
    PeerProtocol,
    decode_batch,
    fetch_datums,
)
from distro.store import DistroStore
from distro.sync import SyncAck, SyncScheduler, SyncSettings, VerifyLoop
from distro.transport import PeerResponse, PeerTransport, PeerUnreachable
from lib.blocking import may_block
from lib.errors import Unavailable, from_wire

log = logging.getLogger(__name__)

SNAPSHOT_RETRY_S = 1.0
# Every peer must say "still starting" this many rounds in a row before a member concludes the
# whole cluster is starting (no ephemeral data anywhere) and starts empty.
ALL_STARTING_ROUNDS = 2
# When some peers cannot be reached and the others are starting, an unreachable one may hold the
# data: wait this long for it before starting empty (clients re-register within a beat anyway).
UNREACHABLE_WAIT_S = 10.0


@dataclass
class SnapshotResult:
    source: str | None  # the peer it came from; None: the whole cluster was starting
    datums: int
    seconds: float


class DistroCluster:
    def __init__(
        self,
        local: str,
        members: tuple[str, ...],
        notifier: Notifier,
        transport: PeerTransport,
        self_state: Callable[[], MemberState],
        version: str = "",
        settings: SyncSettings | None = None,
        *,
        codec: DatumCodec,
        decode_change: Callable[[Any], Change],
        celery_app: Any = None,
        report_interval_s: float = 2.0,
    ) -> None:
        self.settings = settings or SyncSettings()
        self.transport = transport
        self.membership = Membership(
            local, members, transport, self_state, version, interval_s=report_interval_s
        )
        self.store = DistroStore(notifier, codec, on_local_change=self._changed)
        self.store.ready = False
        direct = DirectDispatcher(transport)
        self.dispatcher: Dispatcher = (
            CeleryDispatcher(local, direct, celery_app) if celery_app is not None else direct
        )
        self.sync_ack: SyncAck | None = (
            SyncAck(local, self.membership, transport, self.settings.sync_ack_timeout_s, codec)
            if self.settings.sync_ack
            else None
        )
        self.protocol = PeerProtocol(
            self.store,
            lambda: self.membership.mapper,
            transport,
            lambda: self.store.ready,
            decode_change,
            submit=self._submit_local,
        )
        self.scheduler = SyncScheduler(self.store, self.membership, self.dispatcher, self.settings)
        self.verify = VerifyLoop(
            self.protocol,
            self.membership,
            transport,
            self.dispatcher,
            self.settings,
            lambda: self.store.ready,
        )
        self.snapshot_result: SnapshotResult | None = None
        self.forwarded = 0  # client writes this member proxied to their owner
        self.forward_failures = 0
        # Answers a renewal an edge made on another member (``forward_touch``) with this
        # member's own bookkeeping; installed by the node's builder (distro knows no beats).
        self.on_touch: Callable[[bytes], bytes] | None = None
        self.touches_forwarded = 0
        self._started = False

    @property
    def local(self) -> str:
        return self.membership.local

    def _changed(self, key: DatumKey) -> None:
        self.scheduler.mark(key)

    def responsible(self, grouped_service: str) -> bool:
        return self.membership.mapper.responsible(grouped_service)

    def owner(self, grouped_service: str) -> str:
        return self.membership.mapper.owner(grouped_service)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start reporting and syncing (before the snapshot: we must not miss live changes)."""
        self.membership.start()
        self.scheduler.start()
        self.verify.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self.verify.stop()
        self.scheduler.stop()
        self.membership.stop()

    def load_snapshot(self, stopping: threading.Event) -> SnapshotResult | None:
        """Pull a full snapshot from a peer that is UP; blocks until done or ``stopping``.

        A peer still loading answers 503, so a restarting member never copies another
        restarting member's empty store. Changes synced to us meanwhile are kept (the
        snapshot applies only newer revisions).
        """
        all_starting = 0
        started = time.monotonic()
        nobody_up_since: float | None = None
        peers = len(self.membership.peers)
        while not stopping.is_set():
            reachable = starting = 0
            for peer in self.membership.peers:
                status, datums = fetch_datums(
                    self.transport, peer, "GET", SNAPSHOT_PATH, self.store.codec, timeout=30
                )
                reachable += status != -1
                starting += status == 503
                if datums is None:
                    continue
                for datum in datums:
                    self.store.apply_remote(datum)
                self.membership.on_report(peer, {"state": MemberState.UP.value})
                return self._loaded(peer, len(datums), started)
            if reachable and starting == reachable:
                nobody_up_since = nobody_up_since or time.monotonic()
                all_starting = all_starting + 1 if reachable == peers else 0
                waited = time.monotonic() - nobody_up_since
                if all_starting >= ALL_STARTING_ROUNDS or waited >= UNREACHABLE_WAIT_S:
                    return self._loaded(None, 0, started)
            else:
                all_starting = 0
                nobody_up_since = None
            log.info(
                "waiting for a peer that can give a distro snapshot (%d reachable, %d starting)",
                reachable,
                starting,
            )
            stopping.wait(SNAPSHOT_RETRY_S)
        return None

    def _loaded(self, source: str | None, count: int, started: float) -> SnapshotResult:
        result = SnapshotResult(source, count, time.monotonic() - started)
        self.snapshot_result = result
        if source is None:
            log.info("every reachable member is starting: no ephemeral data to load")
        else:
            log.info("loaded %d datums from %s in %.2f s", count, source, result.seconds)
        return result

    def mark_ready(self) -> None:
        self.store.ready = True
        self.membership.refresh()
        # Tell the peers at once rather than at the next report: they start mapping keys to us.
        # One shot, bounded by the report timeouts; a daemon so a node stopped meanwhile does
        # not wait for it at exit (membership.stop sends the leaving report itself).
        threading.Thread(
            target=self.membership.report_once, name="report-ready", daemon=True
        ).start()

    # -- ConsistencyService ------------------------------------------------------------------

    def _submit_local(self, key: DatumKey, change: Change, timeout: float) -> Applied:
        """Apply on this member as the key's owner; in sync-ack mode, also wait until the key's
        successor holds the result (raises Unavailable, the change applied, if it does not)."""
        if self.sync_ack is not None:
            may_block("distro sync-ack")
        applied = self.store.submit(key, change, timeout)
        if self.sync_ack is not None and self.store.ready:
            self.sync_ack.hold(applied.datum)
        return applied

    def _call_owner(
        self, service: str, path: str, body: bytes, timeout: float, why: str
    ) -> PeerResponse | None:
        """POST ``body`` to the owner of ``service`` and return its (2xx) answer, or None when
        this member is the one to handle it: it owns the key, is still loading (nothing is
        mapped to it yet), or became the owner when a refused connection re-mapped the key."""
        for attempt in range(2):
            if not self.store.ready or self.responsible(service):
                return None
            owner = self.owner(service)
            if owner == self.local:  # an empty map (this member is just turning UP)
                return None
            may_block(why)
            try:
                answer = self.transport.call(
                    owner, "POST", path, body, {"Content-Type": "application/json"}, timeout
                )
            except PeerUnreachable as exc:
                # A refused connection marks the owner DOWN and re-maps the key: one more try
                # with the new owner (possibly this member) before giving up.
                self.membership.on_failure(owner, exc.refused)
                if attempt == 1 or not exc.refused:
                    raise Unavailable(f"distro owner {owner} of {service} is unreachable") from None
                continue
            if not answer.ok:
                raise Unavailable(f"distro owner {owner} answered {answer.status}")
            return answer
        raise AssertionError("unreachable: the second attempt returns or raises")

    def submit(self, key: DatumKey, change: Change, timeout: float) -> Applied:
        """Apply here when this member owns the key (client writes were forwarded here), else
        send the change to the owner. Background writers (auto-clean, a service delete that
        reached any member) thus never fork a key's history on a non-owner."""
        body = json.dumps({"key": key.encode(), "change": change.encode()}).encode()
        answer = self._call_owner(
            key.service, CHANGE_PATH, body, timeout, "distro change sent to its owner"
        )
        if answer is None:
            return self._submit_local(key, change, timeout)
        data = json.loads(answer.body)
        if "error" in data:
            raise from_wire(data["error"])
        datum = decode_batch(answer.body, self.store.codec)[0]
        # Store the owner's result here too, so this member reads its own write at once.
        return Applied(datum, self.store.apply_remote_ticket(datum))

    def forward_touch(self, service: str, body: bytes, timeout: float) -> bytes:
        """Send a renewal to the owner of ``service`` and return its answer. For edges whose
        protocol cannot be proxied as HTTP to the owner (Eureka, airlift: their ports may differ
        or be off there), so that the owner, which alone keeps beats and expires, hears it.
        Retried as :meth:`submit` is; taken here if the key turns out to be ours."""
        try:
            answer = self._call_owner(
                service, TOUCH_PATH, body, timeout, "renewal sent to its distro owner"
            )
        except Unavailable:
            self.forward_failures += 1
            raise
        if answer is None:
            if self.on_touch is None:
                raise Unavailable("this member cannot take renewals yet")
            return self.on_touch(body)
        self.touches_forwarded += 1
        return answer.body

    def get(self, key: DatumKey) -> Datum | None:
        return self.store.get(key)

    def items(self) -> Iterable[Datum]:
        return self.store.items()

    def is_available(self) -> bool:
        return True  # readiness gates clients through the node status, not availability

    def digest(self) -> str:
        """One checksum over every live ephemeral datum: equal on converged members."""
        parts = sorted(f"{d.key.encode()}={self.store.checksum(d)}" for d in self.store.items())
        return hashlib.md5("\n".join(parts).encode(), usedforsecurity=False).hexdigest()

    def status(self) -> Mapping[str, Any]:
        snap = self.snapshot_result
        return {
            "ready": self.store.ready,
            "keys": self.store.status()["keys"],
            "digest": self.digest(),
            "healthyMembers": list(self.membership.mapper.healthy),
            "received": self.protocol.stats(),
            "sync": self.scheduler.status(),
            "dispatch": self.dispatcher.status(),
            "syncAck": None if self.sync_ack is None else self.sync_ack.status(),
            "forwarded": self.forwarded,
            "forwardFailures": self.forward_failures,
            "verifyRounds": self.verify.rounds,
            "verifyFailures": self.verify.failures,
            "reportsSent": self.membership.reports_sent,
            "reportsFailed": self.membership.reports_failed,
            "snapshot": None
            if snap is None
            else {"source": snap.source, "datums": snap.datums, "seconds": round(snap.seconds, 3)},
        }
