"""One shared copy of values that many long-lived objects repeat (issue #11, memory).

100,000 instances mostly repeat a few ports, weights, cluster names; 100,000 audit records
repeat a few actors and keys. Held apart, each copy costs 24-80 bytes per object; a
:class:`Shared` table hands back the first equal copy instead. The table is bounded: past
``limit`` entries it starts over, which only costs sharing, never correctness (a value is
immutable and equal to the copy it replaces).

Thread-safe under the GIL: a lookup and an insertion are each one dict operation; two threads
racing on a new value may each keep their own copy once.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Shared(Generic[K, V]):
    """``share(key, value)``: the value first recorded under an equal key, else ``value``.

    The key is what equality is decided on: a plain tuple of fields is much cheaper to hash
    and compare than a dataclass, whose ``__hash__`` and ``__eq__`` run in Python."""

    __slots__ = ("_limit", "_values")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: dict[K, V] = {}

    def find(self, key: K) -> V | None:
        """The shared copy for ``key``, if any (before building a value worth not building)."""
        return self._values.get(key)

    def share(self, key: K, value: V) -> V:
        known = self._values.get(key)
        if known is not None:
            return known
        if len(self._values) >= self._limit:
            self._values.clear()
        return self._values.setdefault(key, value)

    def __len__(self) -> int:
        return len(self._values)
