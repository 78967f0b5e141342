"""Celery tasks: I/O fan-out only (DESIGN §1). Like views: a self-contained payload in, one
signed request out, retries with backoff; idempotent because receivers keep only newer revisions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Protocol, cast

from celery import shared_task
from django.conf import settings

from distro.dispatch import SYNC_TASK, DispatchFailed, send_batch
from distro.transport import HttpPeerTransport
from lib.keys import peer_key

log = logging.getLogger(__name__)


@functools.cache
def _transport(source: str) -> HttpPeerTransport:
    # The worker loads the same settings as a node (server.config.NamingSettings); distro may
    # not import server, so the typed object is read through Django's settings.
    secret: str = settings.NAMING.cluster_secret
    if not secret:
        raise RuntimeError("the celery worker needs NAMING_CLUSTER_SECRET (the nodes' secret)")
    return HttpPeerTransport(source, peer_key(secret))


class _TaskRequest(Protocol):
    retries: int


class _BoundTask(Protocol):
    """What this task uses of celery's ``Task`` (``bind=True`` passes it first)."""

    request: _TaskRequest
    max_retries: int

    def retry(self, *, exc: BaseException, countdown: float) -> BaseException: ...


def _shared_task(**options: object) -> Callable[[Callable[..., None]], object]:
    # celery ships no types (its names are Any to mypy). The decorator registers the function
    # under ``name``; the task object it returns is only ever reached through the broker by name
    # (distro.dispatch.SYNC_TASK), so nothing here needs more than ``object``.
    return cast(Callable[[Callable[..., None]], object], shared_task(**options))


@_shared_task(
    bind=True,
    name=SYNC_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=4,
)
def sync_datums(self: _BoundTask, source: str, peer: str, body: str) -> None:
    """Deliver one batch of datums from ``source`` to ``peer``; retried 0.5, 1, 2, 4 s later."""
    try:
        send_batch(_transport(source), peer, body.encode())
    except DispatchFailed as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            # The verify round repairs what is left; the task must not loop forever.
            log.warning("sync %s -> %s given up: %s", source, peer, exc)
            return
        raise self.retry(exc=exc, countdown=0.5 * 2**self.request.retries) from None
