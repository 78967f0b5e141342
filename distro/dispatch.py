"""How a batch of changed datums reaches one peer: in-process, or as a Celery task on Redis.

The scheduler (``distro.sync``) decides *what* to send and when; a dispatcher only delivers.
``DirectDispatcher`` sends the signed request itself. ``CeleryDispatcher`` enqueues
``distro.tasks.sync_datums`` (a self-contained JSON payload with revisions, so a redelivered or
reordered task is harmless) and falls back to direct delivery when the broker does not take the
task: Redis being down must delay nothing and lose nothing. Either raises ``DispatchFailed`` when
the batch did not leave, and the scheduler keeps its keys for the next attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from distro.protocol import SYNC_PATH
from distro.transport import PeerTransport, PeerUnreachable

log = logging.getLogger(__name__)

BROKER_BACKOFF_S = 5.0  # after a broker error, deliver directly for this long before retrying it
TASK_EXPIRES_S = 120  # an older sync is superseded by verify rounds anyway
SYNC_TASK = "distro.sync_datums"  # the name ``distro.tasks.sync_datums`` registers under


class DispatchFailed(Exception):
    """``permanent``: the peer refused the batch itself (4xx); sending it again cannot help,
    so the scheduler drops it and leaves the repair to the verify round."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Dispatcher(Protocol):
    def deliver(self, peer: str, body: bytes) -> None:
        """Hand one batch on. Called by the peer's sync thread only; may block up to ~2 s."""
        ...

    def check(self) -> None:
        """Periodic self-check (the verify thread calls it every round)."""
        ...

    def status(self) -> dict[str, Any]: ...


def send_batch(transport: PeerTransport, peer: str, body: bytes) -> None:
    try:
        response = transport.call(
            peer, "PUT", SYNC_PATH, body, {"Content-Type": "application/json"}, timeout=2.0
        )
    except PeerUnreachable as exc:
        raise DispatchFailed(str(exc)) from None
    if not response.ok:
        raise DispatchFailed(
            f"{peer} answered {response.status}: {response.body[:200]!r}",
            permanent=400 <= response.status < 500,
        )


class DirectDispatcher:
    def __init__(self, transport: PeerTransport) -> None:
        self._transport = transport
        self.delivered = 0

    def deliver(self, peer: str, body: bytes) -> None:
        send_batch(self._transport, peer, body)
        self.delivered += 1

    def check(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"mode": "in-process", "delivered": self.delivered}


class CeleryDispatcher:
    def __init__(self, local: str, fallback: DirectDispatcher, app: Any) -> None:
        """``app`` is the Celery app (``server.celery.app``), handed over by the composition
        root: distro never imports the server package. Tasks are sent by name, so this process
        needs no task registry."""
        self._local = local
        self._fallback = fallback
        self._app = app
        self._skip_until = 0.0
        self._lock = threading.Lock()
        self.enqueued = 0
        self.broker_errors = 0
        self.fallback_deliveries = 0
        self.last_error = ""
        self.last_error_at_ms = 0
        self.workers: int | None = None
        self.queued: int | None = None

    def deliver(self, peer: str, body: bytes) -> None:
        if time.monotonic() >= self._skip_until:
            try:
                self._enqueue(peer, body)
                with self._lock:  # several peers' sync threads count here
                    self.enqueued += 1
                return
            except Exception as exc:  # any broker trouble: deliver ourselves, say so loudly
                with self._lock:
                    self.broker_errors += 1
                    self._note_error(exc)
                    self._skip_until = time.monotonic() + BROKER_BACKOFF_S
                log.warning(
                    "celery broker refused a sync task (%s); delivering in-process for %.0f s",
                    self.last_error,
                    BROKER_BACKOFF_S,
                )
        self._fallback.deliver(peer, body)
        with self._lock:
            self.fallback_deliveries += 1

    def _note_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error_at_ms = int(time.time() * 1000)

    def _enqueue(self, peer: str, body: bytes) -> None:
        self._app.send_task(
            SYNC_TASK,
            args=(self._local, peer, body.decode()),
            retry=False,
            expires=TASK_EXPIRES_S,
        )

    def check(self) -> None:
        """Count live workers and queued tasks; a dead worker shows here and in the log."""
        app = self._app
        try:
            replies = app.control.ping(timeout=0.5)
            self.workers = len(replies)
            with app.connection_for_write() as conn:
                self.queued = int(conn.default_channel.client.llen("celery"))
        except Exception as exc:
            self.workers = None
            self.queued = None
            self._note_error(exc)
            log.warning("celery health check failed: %s", self.last_error)
            return
        if self.workers == 0:
            log.warning("no celery worker answers; %s sync tasks wait in redis", self.queued)

    def status(self) -> dict[str, Any]:
        return {
            "mode": "celery",
            "enqueued": self.enqueued,
            "brokerErrors": self.broker_errors,
            "fallbackDeliveries": self.fallback_deliveries,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at_ms,
            "workers": self.workers,
            "queued": self.queued,
        }
