"""Answers that wait or stream: what an edge returns instead of a finished response when the
client asked to be told about a change.

Two shapes, both produced by an edge (on the event loop or on a worker) and carried out by the
node's asyncio server (``server/watching.py``) without a thread per waiting client:

- :class:`Held`: "nothing changed yet; wait up to ``wait_s`` for a change of ``key`` (a service),
  then judge again". ``again(final)`` runs on the loop after each change of ``key`` and once at
  the end (``final`` True, also on shutdown); it answers, or says "still unchanged" (None, only
  when not final) and the wait goes on.
- :class:`EventStream`: the head and a first batch of events (already framed), then every
  later change of the stream's scope, framed by the edge. ``after`` is the last change index the
  first batch reflects; the server sends only changes after it.

The indexes are those of the node's change feed (``naming.feed``); this module knows nothing of
it, so the edges (which may not import ``server``) and the server meet here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")
E = TypeVar("E")


class Held(Generic[T]):
    __slots__ = ("after", "again", "key", "wait_s")

    def __init__(
        self, key: Hashable, after: int, wait_s: float, again: Callable[[bool], T | None]
    ) -> None:
        self.key = key  # what a change must concern to wake this answer (a feed event's service)
        self.after = after  # the feed index read before the answer was judged unchanged
        self.wait_s = wait_s
        self.again = again

    def map(self, convert: Callable[[T], U]) -> Held[U]:
        """The same wait, its answers converted (Django's response → the server's bytes)."""
        again = self.again

        def converted(final: bool) -> U | None:
            answer = again(final)
            return None if answer is None else convert(answer)

        return Held(self.key, self.after, self.wait_s, converted)


class EventStream(Generic[E]):
    __slots__ = ("after", "first", "frame", "headers", "matches", "topic", "topics")

    def __init__(
        self,
        headers: list[tuple[str, str]],
        first: bytes,
        after: int,
        topic: Hashable,
        topics: Callable[[E], Iterable[Hashable]],
        matches: Callable[[E], bool],
        frame: Callable[[E], bytes],
    ) -> None:
        self.headers = headers  # of the 200 (Content-Type...); framing headers are the server's
        self.first = first
        self.after = after
        # Streams are indexed by topic (e.g. a service, a group, a namespace), and ``topics``
        # names those a change concerns (one function for every stream of an edge): a change is
        # offered only to the streams that follow it, not to every stream open. Measured: with
        # 5,000 streams indexed by namespace alone, offering each change to all of them took
        # three quarters of the loop at 200 changes/s.
        self.topic = topic
        self.topics = topics
        self.matches = matches
        # One function for every stream of an edge: the server frames each change once per
        # function, however many streams send it.
        self.frame = frame
