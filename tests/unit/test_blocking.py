"""``lib.blocking``: code about to wait refuses to run on the event-loop thread, and only there."""

from __future__ import annotations

import threading

import pytest

from lib.blocking import MustOffload, clear_loop_thread, mark_loop_thread, may_block, on_loop


def test_may_block_raises_on_the_loop_thread_only() -> None:
    may_block("nothing marked yet")  # no loop in this process: returns
    mark_loop_thread()
    try:
        assert on_loop()
        with pytest.raises(MustOffload) as raised:
            may_block("raft commit")
        assert raised.value.what == "raft commit"
        elsewhere: list[bool] = []

        def worker() -> None:
            may_block("raft commit")  # a worker may wait
            elsewhere.append(on_loop())

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(5)
        assert elsewhere == [False]
    finally:
        clear_loop_thread()
    assert not on_loop()


def test_must_offload_passes_through_except_exception() -> None:
    # The edges turn unexpected errors into a 500 with `except Exception`; the signal must not
    # be caught there, or the request would be answered 500 instead of moving to a worker.
    mark_loop_thread()
    try:
        with pytest.raises(MustOffload):
            try:
                may_block("forward")
            except Exception:  # the point of the test
                pytest.fail("MustOffload was caught as an Exception")
    finally:
        clear_loop_thread()
