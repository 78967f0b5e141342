from __future__ import annotations

import threading

from consistency.datum import Datum, DatumKey, KeyKind
from consistency.notifier import Notifier

KEY_A = DatumKey(KeyKind.EPHEMERAL_INSTANCES, "public", "DEFAULT_GROUP@@a")
KEY_B = DatumKey(KeyKind.SERVICE_META, "public", "DEFAULT_GROUP@@b")


def test_changes_to_one_key_are_coalesced_to_the_newest():
    notifier = Notifier()
    seen: list[tuple[DatumKey, int]] = []
    notifier.add_listener("rec", lambda d: seen.append((d.key, d.revision)))
    for rev in (1, 2, 3):
        notifier.notify(Datum(KEY_A, None, rev))
    notifier.notify(Datum(KEY_B, None, 1))
    notifier.drain()
    assert seen == [(KEY_A, 3), (KEY_B, 1)]


def test_a_stale_revision_does_not_replace_a_newer_queued_one():
    notifier = Notifier()
    seen: list[int] = []
    notifier.add_listener("rec", lambda d: seen.append(d.revision))
    notifier.notify(Datum(KEY_A, None, 5))
    notifier.notify(Datum(KEY_A, None, 4))
    notifier.drain()
    assert seen == [5]


def test_a_failing_listener_is_counted_and_does_not_stop_the_others():
    notifier = Notifier()
    seen: list[int] = []

    def broken(_datum: Datum) -> None:
        raise RuntimeError("boom")

    notifier.add_listener("broken", broken)
    notifier.add_listener("rec", lambda d: seen.append(d.revision))
    notifier.notify(Datum(KEY_A, None, 1))
    notifier.notify(Datum(KEY_B, None, 1))
    notifier.drain()
    assert seen == [1, 1]
    broken_stats = notifier.stats.listeners[0]
    assert (broken_stats.calls, broken_stats.failures) == (2, 2)
    assert "boom" in broken_stats.last_error


def test_wait_processed_returns_once_the_listeners_saw_the_change():
    notifier = Notifier()
    delivered = threading.Event()
    notifier.add_listener("rec", lambda d: delivered.set())
    notifier.start()
    try:
        ticket = notifier.notify(Datum(KEY_A, None, 1))
        assert notifier.wait_processed(ticket, 5.0)
        assert delivered.is_set()
    finally:
        notifier.stop()


def test_the_worker_thread_survives_listener_failures():
    notifier = Notifier()
    notifier.add_listener("broken", lambda d: 1 / 0)
    notifier.start()
    try:
        for rev in range(1, 4):
            assert notifier.wait_processed(notifier.notify(Datum(KEY_A, None, rev)), 5.0)
        assert notifier.stats.listeners[0].failures == 3
    finally:
        notifier.stop()
