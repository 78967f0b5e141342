"""Distro ownership: which member is responsible for an ephemeral key (issue #3 builds on it).

As Nacos 1.4 ``DistroMapper``: the owner of a service is ``healthy[distro_hash(name) % n]`` over
the sorted ``ip:port`` list of healthy members, where ``distro_hash`` is Java's
``Math.abs(String.hashCode() % Integer.MAX_VALUE)`` of the grouped service name (the namespace is
not part of it). Python's ``hash()`` differs per process and must never be used for this.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

_INT_MAX = 2**31 - 1


def java_string_hash(text: str) -> int:
    """Java ``String.hashCode``: 32-bit signed ``s[0]*31^(n-1) + …`` over UTF-16 code units."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - 0x100000000 if h >= 0x80000000 else h


@functools.lru_cache(maxsize=16384)
def distro_hash(grouped_service: str) -> int:
    """Cached: ownership is asked on every forwarded write, beat and sweep, and the hash is a
    Python loop over the name's UTF-16 units (service names are bounded in length)."""
    h = java_string_hash(grouped_service)
    # Java's % keeps the dividend's sign (Python's takes the divisor's); then Math.abs.
    remainder = h % _INT_MAX if h >= 0 else -((-h) % _INT_MAX)
    return abs(remainder)


@dataclass(frozen=True, slots=True)
class DistroMapper:
    """An immutable view of ownership for one member list; rebuilt when membership changes."""

    local: str
    healthy: tuple[str, ...]

    @classmethod
    def of(cls, local: str, healthy_members: Iterable[str]) -> DistroMapper:
        return cls(local, tuple(sorted(healthy_members)))

    def owner(self, grouped_service: str) -> str:
        if not self.healthy:
            return self.local
        return self.healthy[distro_hash(grouped_service) % len(self.healthy)]

    def responsible(self, grouped_service: str) -> bool:
        """Nacos ``DistroMapper.responsible``: a node not in the list answers for everything."""
        if not self.healthy:
            return False
        if self.local not in self.healthy:
            return True
        first = self.healthy.index(self.local)
        last = len(self.healthy) - 1 - self.healthy[::-1].index(self.local)
        target = distro_hash(grouped_service) % len(self.healthy)
        return first <= target <= last
