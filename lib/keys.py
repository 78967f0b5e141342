"""Every key derived from the cluster secret, in one place.

Members share one secret (``NAMING_CLUSTER_SECRET``); each use gets its own key, derived with
HMAC-SHA256 under a distinct label, so the Raft password, the token signing key and the peer
request key are never the same bytes. The Celery worker derives the peer key too, which is why
this lives at the bottom of the layering (``lib``) and not in the composition root.

:func:`node_keys` is the one place that decides, per node, which keys are derived and which
are generated and kept in the data dir (a standalone node has no secret to derive from).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from lib.files import read_or_create_key, read_or_create_secret


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


def session_key(cluster_secret: str) -> str:
    """Django's ``SECRET_KEY`` for a cluster member: the console's signed-cookie sessions and
    their CSRF tokens must validate on every member (a browser fails over like a client)."""
    return _derive(cluster_secret, b"console-sessions").hex()


@dataclass(frozen=True, slots=True)
class NodeKeys:
    """The keys one node runs with (repr hides them: they may end up in a log line)."""

    raft_password: str = field(repr=False)
    token_key: bytes = field(repr=False)
    peer_key: bytes | None = field(repr=False)  # None: standalone, no peers to sign for


def node_keys(cluster_secret: str, data_dir: Path, *, clustered: bool) -> NodeKeys:
    """Every key of a node, derived from the cluster secret or generated in ``data_dir``.

    A cluster member derives all three (every member must accept a token any member issued,
    and peers must verify each other). A standalone node generates its token key and, without a
    secret, its raft password once, in private files; with a secret its raft password is
    derived (so the secret, if set, never travels as the raft password itself).
    """
    if clustered:
        if not cluster_secret:
            raise ValueError("a cluster member needs the cluster secret")
        return NodeKeys(
            raft_password(cluster_secret), token_key(cluster_secret), peer_key(cluster_secret)
        )
    raft = (
        raft_password(cluster_secret)
        if cluster_secret
        else read_or_create_secret(data_dir / "raft.secret")
    )
    return NodeKeys(raft, read_or_create_key(data_dir / "token.key"), None)
