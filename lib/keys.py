"""Every key derived from the cluster secret, in one place.

Members share one secret (``NAMING_CLUSTER_SECRET``); each use gets its own key, derived with
HMAC-SHA256 under a distinct label, so the Raft password, the token signing key and the peer
request key are never the same bytes. The Celery worker derives the peer key too, which is why
this lives at the bottom of the layering (``lib``) and not in the composition root.
"""

from __future__ import annotations

import hashlib
import hmac


def _derive(cluster_secret: str, label: bytes) -> bytes:
    if not cluster_secret:
        raise ValueError("no cluster secret to derive a key from")
    return hmac.new(cluster_secret.encode(), label, hashlib.sha256).digest()


def peer_key(cluster_secret: str) -> bytes:
    """Signs and verifies peer requests (Distro sync, membership reports, forwarded writes)."""
    return _derive(cluster_secret, b"peer-requests")


def raft_password(cluster_secret: str) -> str:
    """pysyncobj's transport password (it encrypts the raft port's traffic)."""
    return _derive(cluster_secret, b"raft-transport").hex()


def token_key(cluster_secret: str) -> bytes:
    """Signs access tokens: every member accepts a token any member issued (clients fail over)."""
    return _derive(cluster_secret, b"token-signing")
