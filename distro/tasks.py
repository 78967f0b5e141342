"""Celery tasks: I/O fan-out only (DESIGN §1). Like views: a self-contained payload in, one
signed request out, retries with backoff; idempotent because receivers keep only newer revisions.
"""

from __future__ import annotations

import functools
import logging

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


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name=SYNC_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=4,
)
def sync_datums(self, source: str, peer: str, body: str) -> None:  # type: ignore[no-untyped-def]
    """Deliver one batch of datums from ``source`` to ``peer``; retried 0.5, 1, 2, 4 s later."""
    try:
        send_batch(_transport(source), peer, body.encode())
    except DispatchFailed as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            # The verify round repairs what is left; the task must not loop forever.
            log.warning("sync %s -> %s given up: %s", source, peer, exc)
            return
        raise self.retry(exc=exc, countdown=0.5 * 2**self.request.retries) from None
