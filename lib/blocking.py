"""The one rule of the event loop: code that waits on I/O never runs on it.

The HTTP server (``server/serving.py``) answers the hottest Nacos routes on its event-loop thread,
because a beat or a list costs less than handing it to a worker and back. Almost all of those
requests are pure memory work; a few are not: a write for a service another member owns (a
forward), a persistent write (a Raft commit), a write in Distro sync-ack mode. Each such place
calls :func:`may_block` *before* it changes anything. On the loop thread that raises
:class:`MustOffload`; the server then runs the same request again from the start on a worker
thread, where :func:`may_block` returns at once. So the loop never waits, and which requests are
cheap is decided by the code that knows, not by a list of routes kept elsewhere.
"""

from __future__ import annotations

import threading

_loop_thread: int | None = None


class MustOffload(BaseException):
    """Raised on the loop thread by code about to block.

    A ``BaseException``, like ``GeneratorExit``: the edges' ``except Exception`` handlers, which
    turn unexpected errors into a 500, must let it pass up to the server. ``finally`` blocks and
    context managers still run, so locks and context variables are released on the way.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def mark_loop_thread() -> None:
    """Called by the server on the thread that runs its event loop, before serving."""
    global _loop_thread
    _loop_thread = threading.get_ident()


def clear_loop_thread() -> None:
    global _loop_thread
    _loop_thread = None


def on_loop() -> bool:
    return _loop_thread is not None and threading.get_ident() == _loop_thread


def may_block(what: str) -> None:
    """Say that the caller is about to wait on I/O (a peer, a quorum, a disk sync).

    Nothing may have been changed before this call on the same request: the request runs again
    from the start on a worker.
    """
    if _loop_thread is not None and threading.get_ident() == _loop_thread:
        raise MustOffload(what)
