"""The typed commands of the core: what an edge hands to ``naming.operations``.

Each edge parses its own protocol into these (the Nacos v1 edge in ``facades.nacos_v1.params``),
validated once; the core never reads request data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from naming.domain import Instance, InstanceKey, Selector, ServiceName

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RegisterInstance:
    service: ServiceName
    instance: Instance


@dataclass(frozen=True, slots=True)
class InstanceRef:
    service: ServiceName
    key: InstanceKey
    ephemeral: bool


@dataclass(frozen=True, slots=True)
class PatchInstanceCommand:
    service: ServiceName
    key: InstanceKey
    weight: float | None
    healthy: bool | None
    enabled: bool | None
    metadata: Mapping[str, str] | None
    app: str | None


@dataclass(frozen=True, slots=True)
class BeatInfo:
    ip: str
    port: int
    cluster: str | None
    weight: float
    metadata: Mapping[str, str]
    ephemeral: bool


@dataclass(frozen=True, slots=True)
class Beat:
    service: ServiceName
    key: InstanceKey
    info: BeatInfo | None


@dataclass(frozen=True, slots=True)
class MetadataBatch:
    service: ServiceName
    consistency_type: str  # "ephemeral" | "persist" | ""
    targets: tuple[tuple[InstanceKey, bool], ...]
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    service: ServiceName
    protect_threshold: float
    metadata: Mapping[str, str]
    selector: Selector


@dataclass(frozen=True, slots=True)
class PinLeaderCommand:
    """Pin ``ip:port`` as the leader of the service (``cluster`` None) or of one cluster."""

    service: ServiceName
    cluster: str | None
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class UnpinLeaderCommand:
    service: ServiceName
    cluster: str | None


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int

    def slice(self, items: Sequence[T]) -> list[T]:
        start = (self.number - 1) * self.size
        return list(items[start : start + self.size])


@dataclass(frozen=True, slots=True)
class BeatResult:
    """What a beat found: whether the instance is known (or was registered again from the
    beat's body), the interval the client should beat at, and the light-beat switch."""

    found: bool
    interval_ms: int
    light_beat_enabled: bool
