"""The Nacos 2.x gRPC server: ``Request`` and ``BiRequestStream`` on the HTTP port + 1000.

Thread: ``grpc-edge``, owned by :class:`GrpcEdge`, started by ``runnode`` next to the HTTP server
and stopped by :meth:`GrpcEdge.stop` (which sets an asyncio event on the thread's loop, stops the
gRPC server with a short grace and joins). The thread runs one asyncio loop (marked as a loop
thread for ``lib.blocking``): the grpc.aio server, every connection's stream, the pushes and the
ejector all live on it, so connection state needs no lock. Handlers that must wait (a forward to
the service's Distro owner, a Raft commit, releasing a closed connection's instances) run on the
edge's bounded worker pool.

Error mapping (one place, etcd's ``togRPCError`` in spirit): a core ``NamingError`` becomes the
handler's own response type with ``resultCode`` 500 and a Nacos ``errorCode``; what is wrong with
the connection itself (not registered, node not UP, unknown type, unreadable bytes) is an
``ErrorResponse``, as the Java server answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from accounts.auth import Identity, authorize
from facades.nacos_v2 import wire
from facades.nacos_v2.connections import (
    Connection,
    ConnectionLimitError,
    Connections,
    next_request_id,
)
from facades.nacos_v2.context import Node
from facades.nacos_v2.handlers import ROUTES, Call, Route, resource_of
from facades.nacos_v2.push import PushHub
from lib.blocking import MustOffload, clear_loop_thread, mark_loop_thread
from lib.errors import ErrorCode, NamingError
from naming import audit
from naming.domain import ServiceName
from naming.leases import Entries

log = logging.getLogger(__name__)

# Nacos's error codes (com.alibaba.nacos.api.exception.NacosException).
INVALID_PARAM = 400
NO_RIGHT = 403
NOT_FOUND = 404
SERVER_ERROR = 500
OVER_THRESHOLD = 503
INVALID_SERVER_STATUS = 300
UN_REGISTER = 301
NO_HANDLER = 302
FAIL = 500  # ResponseCode.FAIL: the resultCode of every error answer

_CODES: Mapping[ErrorCode, int] = {
    ErrorCode.PARAM_REQUIRED: INVALID_PARAM,
    ErrorCode.PARAM_INVALID: INVALID_PARAM,
    ErrorCode.CONFLICT: INVALID_PARAM,
    ErrorCode.TOO_LARGE: INVALID_PARAM,
    ErrorCode.NOT_FOUND: NOT_FOUND,
    ErrorCode.FORBIDDEN: NO_RIGHT,
    ErrorCode.UNAUTHORIZED: NO_RIGHT,
    ErrorCode.NO_SUCH_API: NO_HANDLER,
    ErrorCode.UNAVAILABLE: OVER_THRESHOLD,
    ErrorCode.LIMITED: OVER_THRESHOLD,
    ErrorCode.INTERNAL: SERVER_ERROR,
}

# Answers that travel on the stream (to our pushes and probes), never requests to serve.
_STREAM_ANSWERS = frozenset(
    {"NotifySubscriberResponse", "ClientDetectionResponse", "ConnectResetResponse"}
)
UNSETUP_TTL_S = 30.0  # a ServerCheck whose channel never opened its stream is forgotten


def nacos_code(exc: NamingError) -> int:
    return _CODES.get(exc.code, SERVER_ERROR)


def answer(type_name: str, request_id: str, body: Mapping[str, Any] | None = None) -> bytes:
    out: dict[str, Any] = {
        "resultCode": 200,
        "errorCode": 0,
        "message": "",
        "requestId": request_id,
    }
    if body:
        out.update(body)
    return wire.encode(type_name, out)


def internal_request(type_name: str) -> bytes:
    """A server-to-client request of the connection itself (a probe, a reset), with a requestId
    of the server's choosing that the client's answer echoes."""
    return wire.encode(
        type_name, {"requestId": next_request_id(), "headers": {}, "module": "internal"}
    )


def failure(type_name: str, request_id: str, code: int, message: str) -> bytes:
    return wire.encode(
        type_name,
        {"resultCode": FAIL, "errorCode": code, "message": message, "requestId": request_id},
    )


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The grpc.aio server's options (a function so that bench/grpc.py builds its empty-call
    floor server with exactly these)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        # Clients keep their channel open for hours; let them ping it (Nacos allows it).
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # No bandwidth-delay-product pings: they size flow-control windows for bulk transfers,
        # and every message here is small. Measured with 2,000 clients each calling every 5 s:
        # the server's CPU 38 % -> 34 % of a core (the empty-call floor, bench/grpc.py).
        ("grpc.http2.bdp_probe", 0),
    ]


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    max_connections: int = 20_000
    max_per_client: int = 0
    max_message_bytes: int = 10 * 1024 * 1024
    idle_probe_s: float = 20.0
    probe_timeout_s: float = 5.0
    push_merge_ms: float = 20.0
    push_timeout_s: float = 5.0
    push_retries: int = 3
    workers: int = 16


@dataclass
class EdgeStats:
    requests: int = 0
    offloaded: int = 0
    errors: int = 0  # error answers of any kind
    app_errors: int = 0  # unexpected exceptions in a handler (a bug): logged, answered 500
    malformed: int = 0
    no_handler: int = 0
    not_up: int = 0
    releases: int = 0
    release_failures: int = 0
    streams: int = 0


class GrpcEdge:
    def __init__(self, node: Node, host: str, port: int, settings: GrpcSettings) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.settings = settings
        self.connections = Connections(
            node.address, settings.max_connections, settings.max_per_client
        )
        self.push = PushHub(
            node.registry,
            self._is_up,
            lambda: int(node.operations.switches.defaultCacheMillis),
            settings.push_merge_ms / 1000.0,
            settings.push_timeout_s,
            settings.push_retries,
        )
        self.stats = EdgeStats()
        self.by_type: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="grpc-worker")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutting_down = False
        # Releases a closed connection's instances (blocking: run on the worker pool). The
        # runtime installs its lease reaper's, which leaves what fails to the reaper.
        self.release: Callable[[Mapping[ServiceName, Entries]], int] = self._release_each

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name="grpc-edge", daemon=True)
        self._thread.start()
        if not self._bound.wait(timeout):
            raise RuntimeError(f"gRPC server did not start on {self.host}:{self.port}")
        if self._error is not None:
            raise RuntimeError(
                f"gRPC server cannot listen on {self.host}:{self.port}: {self._error}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # already closed
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        mark_loop_thread()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # a failed bind: reported to start(), which raises
            self._error = exc
            log.exception("gRPC edge stopped on an error")
        finally:
            self._bound.set()
            self.push.unbind()
            clear_loop_thread()
            loop.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.push.bind(self._loop)
        server = grpc.aio.server(options=server_options(self.settings.max_message_bytes))
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "Request", {"request": grpc.unary_unary_rpc_method_handler(self._unary)}
                ),
                grpc.method_handlers_generic_handler(
                    "BiRequestStream",
                    {"requestBiStream": grpc.stream_stream_rpc_method_handler(self._bi_stream)},
                ),
            )
        )
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"port {self.port} is not available")
        self.port = bound  # the port asked for, or the one picked for port 0 (tests)
        await server.start()
        log.info("gRPC (Nacos 2.x) listening on %s:%d", self.host, self.port)
        self._bound.set()
        ejector = asyncio.create_task(self._eject_loop())
        await self._stopping.wait()
        # From here a closing stream keeps its instances: the clients reconnect to another
        # member and register again there; releasing them now would empty their services on
        # every member for that moment. Those that do not come back are reaped after the grace.
        self._shutting_down = True
        ejector.cancel()
        for conn in list(self.connections.by_id.values()):
            conn.close()
        await server.stop(1.0)

    def _is_up(self) -> bool:
        return self.node.effective_status() == "UP"

    # -- unary requests ----------------------------------------------------------------------

    async def _unary(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.stats.requests += 1
        try:
            inbound = wire.decode(data)
        except NamingError as exc:
            self.stats.malformed += 1
            self.stats.errors += 1
            return failure("ErrorResponse", "", INVALID_PARAM, exc.message)
        kind = inbound.type
        self.by_type[kind] += 1
        rid = inbound.body.get("requestId")
        rid = rid if isinstance(rid, str) else ""
        status = self.node.effective_status()
        if status != "UP":
            self.stats.not_up += 1
            self.stats.errors += 1
            return failure(
                "ErrorResponse",
                rid,
                INVALID_SERVER_STATUS,
                f"server is {status} now, please try again later!",
            )
        if kind == "ServerCheckRequest":
            conn = self.connections.check(context.peer())
            return answer(
                "ServerCheckResponse",
                rid,
                {"connectionId": conn.id, "supportAbilityNegotiation": False},
            )
        found = self.connections.find(context.peer())
        if found is None or not found.registered:
            self.connections.stats.unregistered_requests += 1
            self.stats.errors += 1
            return failure("ErrorResponse", rid, UN_REGISTER, "Connection is unregistered.")
        conn = found
        conn.touch()
        route = ROUTES.get(kind)
        if route is None:
            self.stats.no_handler += 1
            self.stats.errors += 1
            return failure(
                "ErrorResponse", rid, NO_HANDLER, f"RequestHandler Not Found: {kind[:80]}"
            )
        try:
            identity = self._authorize(route, inbound)
            body = await self._call(route, conn, inbound, identity)
        except NamingError as exc:
            self.stats.errors += 1
            return failure(route.response, rid, nacos_code(exc), exc.message)
        except Exception:
            self.stats.app_errors += 1
            self.stats.errors += 1
            log.exception("gRPC %s failed", kind)
            return failure(route.response, rid, SERVER_ERROR, "internal error")
        return answer(route.response, rid, body)

    def _authorize(self, route: Route, inbound: wire.Inbound) -> Identity | None:
        auth = self.node.auth
        if auth is None or route.action is None:
            return None
        token = inbound.headers.get("accessToken")
        if not token:
            headers = inbound.body.get("headers")
            if isinstance(headers, dict):
                raw = headers.get("accessToken")
                token = raw if isinstance(raw, str) else None
        identity = auth.authenticate(None, token or None, None, None, inbound.client_ip)
        authorize(identity, route.action, resource_of(inbound.body, route.service_scoped))
        return identity

    async def _call(
        self, route: Route, conn: Connection, inbound: wire.Inbound, identity: Identity | None
    ) -> dict[str, Any]:
        call = Call(
            self.node.operations,
            self.node.registry,
            self.push,
            conn,
            inbound.body,
            identity,
            int(time.time() * 1000),
        )
        user = identity.username if identity is not None else "anonymous"
        address = inbound.client_ip or conn.remote_ip
        reason = f"grpc {inbound.type}"

        def run() -> dict[str, Any]:
            with audit.acting(user, address, audit.VIA_API, reason):
                return route.handler(call)

        try:
            body = run()
        except MustOffload:
            self.stats.offloaded += 1
            call.effects.clear()  # the first try changed nothing; its effects are void
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._pool, run)
        for effect in call.effects:
            effect()
        return body

    # -- the bi-stream -----------------------------------------------------------------------

    async def _bi_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self.stats.streams += 1
        peer = context.peer()
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        holder: list[Connection] = []
        reader = asyncio.create_task(self._read_stream(requests, peer, outbox, holder))
        try:
            while True:
                item = await outbox.get()
                if item is None:
                    break
                await context.write(item)
        except (asyncio.CancelledError, grpc.aio.AioRpcError, RuntimeError, OSError):
            pass  # the client went away: the cleanup below is all that is left to do
        finally:
            reader.cancel()
            if holder:
                self._spawn(self._closed(holder[0]))

    async def _read_stream(
        self,
        requests: AsyncIterator[bytes],
        peer: str,
        outbox: asyncio.Queue[bytes | None],
        holder: list[Connection],
    ) -> None:
        try:
            async for data in requests:
                try:
                    inbound = wire.decode(data)
                except NamingError:
                    self.stats.malformed += 1
                    continue
                if inbound.type == "ConnectionSetupRequest":
                    if not holder and not self._setup(peer, inbound, outbox, holder):
                        return
                    continue
                if not holder:
                    continue  # nothing may come before the setup; Nacos ignores it too
                conn = holder[0]
                conn.touch()
                if inbound.type in _STREAM_ANSWERS:
                    waiter = conn.pending.pop(str(inbound.body.get("requestId", "")), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(inbound.body)
        except (asyncio.CancelledError, grpc.aio.AioRpcError, RuntimeError, OSError):
            pass
        finally:
            outbox.put_nowait(None)  # the client's side ended: end ours

    def _setup(
        self,
        peer: str,
        inbound: wire.Inbound,
        outbox: asyncio.Queue[bytes | None],
        holder: list[Connection],
    ) -> bool:
        conn = self.connections.find(peer) or self.connections.check(peer)
        if conn.registered:  # another stream on a registered transport joins it as it is
            holder.append(conn)
            return True
        body = inbound.body
        conn.client_ip = inbound.client_ip
        conn.version = str(body.get("clientVersion") or "")[:64]
        conn.tenant = str(body.get("tenant") or "")[:128]
        labels = body.get("labels")
        if isinstance(labels, dict):
            conn.labels = {str(k)[:64]: str(v)[:256] for k, v in list(labels.items())[:32]}
        try:
            self.connections.register(conn, outbox)
        except ConnectionLimitError as exc:
            log.info("gRPC connection %s refused: %s", conn.id, exc.message)
            self.connections.remove(conn)
            outbox.put_nowait(internal_request("ConnectResetRequest"))
            return False
        holder.append(conn)
        return True

    async def _closed(self, conn: Connection) -> None:
        """The stream ended: release the connection's instances everywhere, drop its
        subscriptions. Instances go through the core like a deregister (to the service's
        Distro owner, synced to every member); what cannot be released now (an unreachable
        owner) is left to the lease reaper, which removes it after its grace."""
        self.connections.remove(conn)
        self.push.drop(conn)
        if not conn.instances or self._shutting_down:
            return
        lease = conn.lease
        held = {service: [(key, lease) for key in keys] for service, keys in conn.instances.items()}
        conn.instances.clear()
        user, address = "system", conn.client_ip or conn.remote_ip

        def release() -> int:
            with audit.acting(user, address, audit.VIA_API, "grpc connection closed"):
                return self.release(held)

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, release)
            self.stats.releases += 1
        except Exception:
            self.stats.release_failures += 1
            log.exception("releasing the instances of connection %s failed", conn.id)

    def _release_each(self, held: Mapping[ServiceName, Entries]) -> int:
        """Without a lease reaper (a runtime built without one): the core directly."""
        return sum(
            self.node.operations.release_leased(service, list(entries))
            for service, entries in held.items()
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- ejector -----------------------------------------------------------------------------

    async def _eject_loop(self) -> None:
        """Probe connections silent for ``idle_probe_s`` and drop those that do not answer
        within ``probe_timeout_s`` (Nacos's NacosRuntimeConnectionEjector, every 3 s)."""
        interval = max(
            0.05, min(3.0, self.settings.idle_probe_s / 4, self.settings.probe_timeout_s / 4)
        )
        while True:
            await asyncio.sleep(interval)
            try:
                self._eject_once(time.monotonic())
            except Exception:  # never let the ejector die: count it and go on
                self.stats.app_errors += 1
                log.exception("gRPC ejector round failed")

    def _eject_once(self, now: float) -> None:
        stats = self.connections.stats
        for conn in list(self.connections.by_id.values()):
            if not conn.registered:
                if now - conn.last_active > UNSETUP_TTL_S:
                    self.connections.remove(conn)
                continue
            if conn.probe_sent:
                if now - conn.probe_sent >= self.settings.probe_timeout_s:
                    stats.ejected += 1
                    log.info("gRPC connection %s did not answer its probe: dropped", conn.id)
                    conn.close()
            elif now - conn.last_active >= self.settings.idle_probe_s:
                conn.probe_sent = now
                stats.probes_sent += 1
                conn.send(internal_request("ClientDetectionRequest"))

    # -- operator view -----------------------------------------------------------------------

    def live_connection_ids(self) -> frozenset[str]:
        return self.connections.live_ids()

    def connection_list(self) -> list[dict[str, Any]]:
        return self.connections.snapshot()

    def status(self) -> dict[str, Any]:
        conns = self.connections
        return {
            "port": self.port,
            "connections": conns.registered_count(),
            "unsetup": len(conns.unsetup),
            "subscriptions": self.push.subscription_count(),
            "limits": {"total": conns.max_connections, "perClient": conns.max_per_client},
            "edge": dict(self.stats.__dict__),
            "connectionEvents": dict(conns.stats.__dict__),
            "push": self.push.stats.as_dict(),
            "requestsByType": dict(self.by_type),
        }
