"""Typed keys and datums, and the seam of the one codec between values and JSON.

A :class:`DatumKey` is a value, never a string parsed with ``startswith``: its ``kind`` decides
the consistency mode (ephemeral → Distro, everything else → Raft). The values are the core's
business: the stores hold them opaquely and turn them into JSON (Raft snapshots, Distro sync,
checksums) through a :class:`DatumCodec` the composition root builds from the core's value codecs
(``naming.codec``), one per key kind. Nothing here imports the core (hashicorp/raft ``fsm.go``:
the library never imports its client).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# A stored value, opaque to this layer (the core's domain values: instance sets, service meta,
# switches). Only the core's changes and codecs look inside.
Value = object


class KeyKind(StrEnum):
    EPHEMERAL_INSTANCES = "iplist.ephemeral"
    PERSISTENT_INSTANCES = "iplist"
    SERVICE_META = "meta"
    SWITCHES = "switches"
    NAMESPACES = "namespaces"  # the registered namespaces (one document)
    ACCOUNTS = "accounts"  # users, role bindings, permissions, token generations (one document)


class ServiceRef(Protocol):
    """What a key needs of a service name (``naming.domain.ServiceName`` is one)."""

    @property
    def namespace(self) -> str: ...

    @property
    def grouped(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DatumKey:
    kind: KeyKind
    namespace: str = ""
    service: str = ""  # grouped name; empty for SWITCHES

    @property
    def ephemeral(self) -> bool:
        return self.kind is KeyKind.EPHEMERAL_INSTANCES

    @classmethod
    def instances(cls, service: ServiceRef, ephemeral: bool) -> DatumKey:
        kind = KeyKind.EPHEMERAL_INSTANCES if ephemeral else KeyKind.PERSISTENT_INSTANCES
        return cls(kind, service.namespace, service.grouped)

    @classmethod
    def meta(cls, service: ServiceRef) -> DatumKey:
        return cls(KeyKind.SERVICE_META, service.namespace, service.grouped)

    @classmethod
    def switches(cls) -> DatumKey:
        return cls(KeyKind.SWITCHES)

    @classmethod
    def namespaces(cls) -> DatumKey:
        return cls(KeyKind.NAMESPACES)

    @classmethod
    def accounts(cls) -> DatumKey:
        return cls(KeyKind.ACCOUNTS)

    def encode(self) -> str:
        """``kind##namespace##service``; ``##`` cannot occur in a valid name."""
        return f"{self.kind.value}##{self.namespace}##{self.service}"

    @classmethod
    def decode(cls, raw: str) -> DatumKey:
        kind, namespace, service = raw.split("##", 2)
        return cls(KeyKind(kind), namespace, service)


@dataclass(frozen=True, slots=True)
class Datum:
    """One versioned value. ``value is None`` is a tombstone (the key was removed)."""

    key: DatumKey
    value: Value | None
    revision: int


# ---------------------------------------------------------------------------------------------
# Codec seam
# ---------------------------------------------------------------------------------------------


class ValueCodec(Protocol):
    """The JSON form of the values of one key kind, given by the core.

    ``encode`` output must be JSON-serializable and ``decode(encode(v))`` equal to ``v``;
    ``canonical`` is the order-independent form a content checksum is computed over."""

    def encode(self, value: Any) -> Any: ...

    def decode(self, data: Any) -> Any: ...

    def canonical(self, value: Any) -> Any: ...


class DocumentCodec:
    """For values that already are JSON documents (nested dicts and lists of plain data, never
    mutated once stored): the stored form is the value itself."""

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, data: Any) -> Any:
        return data

    def canonical(self, value: Any) -> Any:
        return value


class DatumCodec:
    """Datums ⇄ JSON, with one :class:`ValueCodec` per key kind (every kind must have one)."""

    __slots__ = ("_codecs",)

    def __init__(self, codecs: Mapping[KeyKind, ValueCodec]) -> None:
        missing = [k.value for k in KeyKind if k not in codecs]
        if missing:
            raise ValueError(f"no value codec for key kinds {missing}")
        self._codecs = dict(codecs)

    def encode_value(self, kind: KeyKind, value: Value | None) -> Any:
        return None if value is None else self._codecs[kind].encode(value)

    def decode_value(self, kind: KeyKind, data: Any) -> Value | None:
        return None if data is None else self._codecs[kind].decode(data)

    def canonical_value(self, kind: KeyKind, value: Value | None) -> Any:
        return None if value is None else self._codecs[kind].canonical(value)

    def encode_datum(self, datum: Datum) -> dict[str, Any]:
        return {
            "key": datum.key.encode(),
            "revision": datum.revision,
            "value": self.encode_value(datum.key.kind, datum.value),
        }

    def decode_datum(self, data: Mapping[str, Any]) -> Datum:
        key = DatumKey.decode(str(data["key"]))
        return Datum(key, self.decode_value(key.kind, data["value"]), int(data["revision"]))


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
