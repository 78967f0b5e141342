"""A raw Nacos 2.x gRPC client for tests: bytes in, bytes out, no SDK in between.

One :class:`GrpcClient` is one SDK-like connection: a channel, its unary ``Request/request`` and
its ``BiRequestStream`` (opened by :meth:`GrpcClient.connect`). What the server sends on the
stream lands in ``received``; ``ended`` is set once the server (or the transport) ends the stream.
Every wait is bounded by a timeout.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from facades.nacos_v2 import wire


def payload(
    kind: str, body: bytes, headers: dict[str, str] | None = None, client_ip: str = ""
) -> bytes:
    """A ``Payload`` around any body bytes (JSON or not), for requests the codec would refuse."""
    message: Any = wire.PAYLOAD()
    message.metadata.type = kind
    message.metadata.clientIp = client_ip
    if headers:
        message.metadata.headers.update(headers)
    message.body.value = body
    data: bytes = message.SerializeToString()
    return data


class GrpcClient:
    """``headers`` travel in every payload's metadata (``accessToken`` as the SDK sends it);
    ``answer_probes`` answers the server's ``ClientDetectionRequest`` and acks its pushes, as a
    live SDK does, so the connection outlives the server's idle probe."""

    def __init__(
        self,
        port: int,
        headers: dict[str, str] | None = None,
        client_ip: str = "",
        answer_probes: bool = False,
    ) -> None:
        # A transport of its own, as the SDKs ask: the server keys a connection by its
        # transport peer, and grpc would otherwise share one TCP connection between channels.
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.unary: Any = self.channel.unary_unary("/Request/request")
        self.headers = dict(headers or {})
        self.client_ip = client_ip
        self.answer_probes = answer_probes
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self.received: queue.Queue[wire.Inbound] = queue.Queue()
        self.ended = threading.Event()
        self.end_code: grpc.StatusCode | None = None
        self._stream: Any = None

    def encode(self, kind: str, body: dict[str, Any]) -> bytes:
        # NaN and Infinity allowed on purpose: hostile tests send them.
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return payload(kind, data, self.headers, self.client_ip)

    def request(self, kind: str, **body: Any) -> wire.Inbound:
        return self.raw(self.encode(kind, {"requestId": "r1", "headers": {}, **body}))

    def raw(self, data: bytes, timeout: float = 10.0) -> wire.Inbound:
        return wire.decode(self.unary(data, timeout=timeout))

    def connect(self, wait: bool = True, **setup: Any) -> str:
        """ServerCheck, then the stream and its setup; with ``wait``, until the server has
        registered the connection (the setup travels on the stream, so a unary request sent
        right after it may still meet ``UN_REGISTER``)."""
        checked = self.request("ServerCheckRequest")
        assert checked.type == "ServerCheckResponse", checked
        self.open_stream()
        fields = {"clientVersion": "test", "tenant": "", "labels": {"a": "b"}, **setup}
        self.send("ConnectionSetupRequest", **fields)
        if wait:
            self.ready()
        return str(checked.body["connectionId"])

    def ready(self, timeout: float = 10.0) -> None:
        """Wait until the server has registered the connection."""
        deadline = time.monotonic() + timeout
        while self.request("HealthCheckRequest").type != "HealthCheckResponse":
            assert time.monotonic() < deadline, "the connection was not registered in time"
            time.sleep(0.02)

    def open_stream(self) -> None:
        def outgoing() -> Iterator[bytes]:
            while True:
                item = self._out.get()
                if item is None:
                    return
                yield item

        open_call: Any = self.channel.stream_stream("/BiRequestStream/requestBiStream")
        self._stream = open_call(outgoing())

        def pump() -> None:
            try:
                for data in self._stream:
                    got = wire.decode(data)
                    if self.answer_probes and got.type in _ANSWERS:
                        rid = got.body.get("requestId")
                        self.send(_ANSWERS[got.type], requestId=rid, resultCode=200)
                    self.received.put(got)
            except grpc.RpcError as exc:
                self.end_code = exc.code()
            finally:
                self.ended.set()

        threading.Thread(target=pump, daemon=True).start()

    def send(self, kind: str, **body: Any) -> None:
        self._out.put(self.encode(kind, {"headers": {}, **body}))

    def send_raw(self, data: bytes) -> None:
        self._out.put(data)

    def next(self, kind: str, timeout: float = 10.0) -> wire.Inbound:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            if got.type == kind:
                return got

    def close(self) -> None:
        self._out.put(None)
        self.channel.close()


_ANSWERS = {
    "ClientDetectionRequest": "ClientDetectionResponse",
    "NotifySubscriberRequest": "NotifySubscriberResponse",
}
