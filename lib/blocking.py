"""The one rule of the event loop: code that waits on I/O never runs on it.

The HTTP server (``server/serving.py``) answers the hottest Nacos routes on its event-loop thread,
because a beat or a list costs less than handing it to a worker and back. Almost all of those
requests are pure memory work; a few are not: a write for a service another member owns (a
forward), a persistent write (a Raft commit), a write in Distro sync-ack mode. Each such place
calls :func:`may_block` *before* it changes anything. On the loop thread that raises
:class:`MustOffload`; the server then runs the same request again from the start on a worker
thread, where :func:`may_block` returns at once. So the loop never waits, and which requests are
cheap is decided by the code that knows, not by a list of routes kept elsewhere.

One blocking step is common enough on the hot path to deserve better than a worker: forwarding a
write to the member that owns its service. There the edge returns a :class:`Deferred` (the peer
request, signed, and what to answer once the peer replied), and the loop sends it on a pooled
connection while it serves other requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

# The threads that run an event loop: the HTTP server's and the gRPC edge's (``facades.nacos_v2``).
# Replaced whole, never mutated, so a reader needs no lock.
_loop_threads: frozenset[int] = frozenset()
T = TypeVar("T")


class MustOffload(BaseException):
    """Raised on the loop thread by code about to block.

    A ``BaseException``, like ``GeneratorExit``: the edges' ``except Exception`` handlers, which
    turn unexpected errors into a 500, must let it pass up to the server. ``finally`` blocks and
    context managers still run, so locks and context variables are released on the way.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


_marking = threading.Lock()


def mark_loop_thread() -> None:
    """Called by a server on the thread that runs its event loop, before serving."""
    global _loop_threads
    with _marking:
        _loop_threads = _loop_threads | {threading.get_ident()}


def clear_loop_thread() -> None:
    global _loop_threads
    with _marking:
        _loop_threads = _loop_threads - {threading.get_ident()}


def on_loop() -> bool:
    return threading.get_ident() in _loop_threads


def may_block(what: str) -> None:
    """Say that the caller is about to wait on I/O (a peer, a quorum, a disk sync).

    Nothing may have been changed before this call on the same request: the request runs again
    from the start on a worker. The one exception is what the request keeps for its own re-run
    under ``naming.*`` keys of its WSGI environ (a verified peer signature, whose nonce is spent).
    """
    if on_loop():
        raise MustOffload(what)


@dataclass(frozen=True, slots=True)
class PeerCall:
    """One request to another member, complete with its signed headers: the event loop sends
    it without a thread (``server/peers.py``)."""

    peer: str  # host:port
    method: str
    target: str  # path and query
    body: bytes
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True, slots=True)
class PeerReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


# (reply, failure reason, connection refused) -> what the edge answers its client
Complete = Callable[[PeerReply | None, str, bool], T]


class Deferred(Generic[T]):
    """An answer that waits for one peer request: what a hot request on the loop returns
    instead of blocking (a forward to a service's Distro owner). ``complete`` runs on the loop
    once the reply (or the failure) is in; it must not block either."""

    __slots__ = ("call", "complete")

    def __init__(self, call: PeerCall, complete: Complete[T]) -> None:
        self.call = call
        self.complete = complete
