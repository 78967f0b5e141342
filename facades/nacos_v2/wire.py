"""``Payload`` on the wire: protobuf framing around a JSON body (``nacos-v2-grpc.md`` §1).

The two messages are built at run time from a descriptor written out below, in a pool of our
own, instead of from protoc-generated code: the schema is four fields, generated modules pin a
protobuf runtime range, and a private pool cannot clash with a client library's registration of
the same file name in the same process. ``nacos_grpc_service.proto`` beside this file is the
same schema as text; a unit test checks both against the SDK's generated module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from lib.errors import InvalidParam

_F = descriptor_pb2.FieldDescriptorProto


def _schema() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="nacos_grpc_service.proto", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    meta = proto.message_type.add(name="Metadata")
    meta.field.add(name="type", number=3, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    meta.field.add(name="clientIp", number=8, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    meta.field.add(
        name="headers",
        number=7,
        label=_F.LABEL_REPEATED,
        type=_F.TYPE_MESSAGE,
        type_name=".Metadata.HeadersEntry",
    )
    entry = meta.nested_type.add(name="HeadersEntry")
    entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    entry.options.map_entry = True
    payload = proto.message_type.add(name="Payload")
    payload.field.add(
        name="metadata",
        number=2,
        label=_F.LABEL_OPTIONAL,
        type=_F.TYPE_MESSAGE,
        type_name=".Metadata",
    )
    payload.field.add(
        name="body",
        number=3,
        label=_F.LABEL_OPTIONAL,
        type=_F.TYPE_MESSAGE,
        type_name=".google.protobuf.Any",
    )
    return proto


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
_pool.Add(_schema())
PAYLOAD: type[Message] = message_factory.GetMessageClass(_pool.FindMessageTypeByName("Payload"))
SCHEMA = _schema

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RawJson:
    """A JSON value encoded once and spliced into every body that carries it: a 100-host list
    costs half a millisecond of encoding, the rest of an answer around it a few microseconds."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def of(cls, value: Any) -> RawJson:
        return cls(_dumps(value))


# The encoder writes this string where a RawJson goes, and the fragment replaces its encoded
# form. A client's own string equal to it would throw the count off: then (never in practice)
# the fragments are parsed and encoded like any other value.
_MARK = "\x00raw\x00"
_MARK_ENCODED = _dumps(_MARK)


def _parsed(value: Any) -> Any:
    if isinstance(value, RawJson):
        return json.loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps_spliced(body: dict[str, Any]) -> str:
    raws: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, RawJson):
            raws.append(value.text)
            return _MARK
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=default).encode(body)
    if not raws:
        return text
    parts = text.split(_MARK_ENCODED)
    if len(parts) != len(raws) + 1:  # a client's own string held the mark: decode the fragments
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_parsed).encode(
            body
        )
    out = [parts[0]]
    for raw, part in zip(raws, parts[1:], strict=True):
        out += (raw, part)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded payload: its type name, metadata headers, client address and JSON body."""

    type: str
    headers: dict[str, str]
    client_ip: str
    body: dict[str, Any] = field(default_factory=dict)


def decode(data: bytes) -> Inbound:
    """Bytes from the wire → :class:`Inbound`; anything malformed is an ``InvalidParam``."""
    try:
        payload: Any = PAYLOAD.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidParam(f"malformed payload: {exc}") from None
    meta = payload.metadata
    raw = payload.body.value
    body: Any = {}
    if raw:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidParam(f"payload body is not JSON: {exc}") from None
        except RecursionError:  # a few KB of "[[[[" is enough; the parser gives up, we answer
            raise InvalidParam("payload body is nested too deeply") from None
        if not isinstance(body, dict):
            raise InvalidParam("payload body must be a JSON object")
    return Inbound(str(meta.type), dict(meta.headers), str(meta.clientIp), body)


def encode(type_name: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    payload: Any = PAYLOAD()
    payload.metadata.type = type_name
    if headers:
        payload.metadata.headers.update(headers)
    payload.body.value = _dumps_spliced(body).encode()
    data: bytes = payload.SerializeToString()
    return data
