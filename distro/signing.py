"""Signed peer calls (issue #3 builds the peer endpoints on it).

A peer request carries ``X-Naming-Node`` (the sender's address), ``X-Naming-Receiver`` (the
member it is addressed to), ``X-Naming-Timestamp`` (unix seconds), ``X-Naming-Nonce`` and
``X-Naming-Signature``: HMAC-SHA256, under a key derived from ``NAMING_CLUSTER_SECRET``, over the
method, the path with its query, the SHA-256 of the body, the timestamp, the node, the receiver
and the nonce, and ``X-Naming-Actor`` when present (who a forwarded write is for: the receiver
records it in its audit trail, so it must not be altered, added or stripped in transit). A
receiver accepts it only when addressed to itself, inside a time window and only once (nonces
seen in the window are remembered), so a captured request cannot be replayed, to this member or
to another one (each remembers only its own nonces), or altered. No header such as
``User-Agent: Nacos-Server`` grants anything (CVE-2021-29441).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from lib.errors import Forbidden, Unauthorized
from lib.ratelimit import LogThrottle

NODE = "X-Naming-Node"
RECEIVER = "X-Naming-Receiver"
TIMESTAMP = "X-Naming-Timestamp"
NONCE = "X-Naming-Nonce"
SIGNATURE = "X-Naming-Signature"
ACTOR = "X-Naming-Actor"
WINDOW_S = 30.0
MAX_REMEMBERED = 100_000
LOG_INTERVAL_S = 10.0

log = logging.getLogger(__name__)


class Unsigned(Unauthorized):
    pass


def _message(
    method: str,
    path: str,
    body: bytes,
    timestamp: str,
    node: str,
    receiver: str,
    nonce: str,
    actor: str = "",
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = [method.upper(), path, digest, timestamp, node, receiver, nonce]
    if actor:
        # A request without the header signs exactly as before; one with it cannot lose it.
        parts.append(actor)
    return "\n".join(parts).encode()


def sign(
    key: bytes,
    method: str,
    path: str,
    body: bytes,
    node: str,
    receiver: str,
    now: float | None = None,
    actor: str = "",
) -> dict[str, str]:
    """The signature headers; ``actor`` (an ``X-Naming-Actor`` value) is covered when given."""
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(12)
    message = _message(method, path, body, timestamp, node, receiver, nonce, actor)
    mac = hmac.new(key, message, hashlib.sha256)
    headers = {
        NODE: node,
        RECEIVER: receiver,
        TIMESTAMP: timestamp,
        NONCE: nonce,
        SIGNATURE: mac.hexdigest(),
    }
    if actor:
        headers[ACTOR] = actor
    return headers


class Verifier:
    """Checks signatures of requests addressed to ``receiver`` (this member's address) and
    remembers nonces for the window. Thread-safe."""

    def __init__(self, key: bytes, receiver: str, window_s: float = WINDOW_S) -> None:
        self._key = key
        self._receiver = receiver
        self._window = window_s
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        now: float | None = None,
    ) -> str:
        """Returns the sender's address; raises 401 when unsigned, 403 when wrong."""
        values = [headers.get(name) for name in (NODE, RECEIVER, TIMESTAMP, NONCE, SIGNATURE)]
        if not all(values):
            raise Unsigned("peer request is not signed")
        node, receiver, timestamp, nonce, signature = (str(v) for v in values)
        if receiver != self._receiver:
            raise Forbidden(f"peer request is addressed to {receiver}, not to {self._receiver}")
        current = now if now is not None else time.time()
        try:
            sent = float(timestamp)
        except ValueError:
            raise Forbidden("peer request has a malformed timestamp") from None
        if abs(current - sent) > self._window:
            raise Forbidden("peer request is outside the time window")
        expected = hmac.new(
            self._key,
            _message(
                method, path, body, timestamp, node, self._receiver, nonce, headers.get(ACTOR, "")
            ),
            hashlib.sha256,
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Forbidden("peer request signature does not match")
        with self._lock:
            self._forget_older_than(current - 2 * self._window)
            if nonce in self._seen:
                raise Forbidden("peer request was replayed")
            self._seen[nonce] = current
            while len(self._seen) > MAX_REMEMBERED:
                self._seen.popitem(last=False)
        return node

    def _forget_older_than(self, cutoff: float) -> None:
        while self._seen:
            oldest_nonce, seen_at = next(iter(self._seen.items()))
            if seen_at >= cutoff:
                return
            self._seen.pop(oldest_nonce)


class RejectionLog:
    """Logs refused peer calls: the first at once, then at most one line per interval with the
    count since the last line (a flood of forged calls must not flood the log). Thread-safe."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._throttle = LogThrottle(interval_s)
        self._lock = threading.Lock()
        self.rejected = 0

    def rejected_call(self, method: str, path: str, remote: str, reason: str) -> None:
        with self._lock:
            self.rejected += 1
        suppressed = self._throttle.admit()
        if suppressed is None:
            return
        more = f" ({suppressed} more refused since the last line)" if suppressed else ""
        log.warning("refused peer call %s %s from %s: %s%s", method, path, remote, reason, more)
