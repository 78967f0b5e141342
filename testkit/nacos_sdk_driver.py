"""Child process that drives the real nacos-sdk-python ``v2.nacos`` naming client.

Run by ``testkit.nacos_sdk.SdkClient`` with the interpreter of the SDK version under test
(``.venv/bin/python`` has 2.0.9, ``.venv-sdk3/bin/python`` has 3.2.0), so it imports nothing from
this repository: the 3.2.0 environment holds the SDK alone.

Line protocol (UTF-8 JSON, one object a line):
- stdin: ``{"id": 1, "cmd": "register", "args": {...}}``
- stdout: ``{"id": 1, "ok": true, "result": ...}`` or ``{"id": 1, "ok": false, "error": "<type>:
  <message>"}``, and, unsolicited, ``{"event": "push", "service": ..., "group": ..., "clusters":
  [...], "hosts": [...], "t": <wall clock s>}`` from subscribe callbacks.

Commands run one at a time, in order, each bounded by ``timeout_s`` (default 30 s), so a reply
never waits for an SDK that hangs. stdin closing ends the process after a clean shutdown. The SDK
logs into the ``log_dir`` given to ``start``; the driver's own stderr is the parent's log file.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

SDK_DISTRIBUTION = "nacos-sdk-python"
DEFAULT_TIMEOUT_S = 30.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def emit(message: dict[str, Any]) -> None:
    # One write per line; asyncio runs everything on one thread, the reader thread never writes.
    sys.stdout.write(json.dumps(message, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def host_dict(instance: Any) -> dict[str, Any]:
    """The SDK's ``Instance`` (a pydantic model in both versions) as the SDK sees it."""
    return dict(instance.model_dump(mode="json"))


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError: the SDK call did not return in time"
    return f"{type(exc).__name__}: {exc}"


class Driver:
    def __init__(self) -> None:
        self.naming: Any = None
        self.namespace = ""
        # The same callable for subscribe and unsubscribe: 2.0.9 removes a callback by identity,
        # 3.2.0 by (callable, cluster selector).
        self.callbacks: dict[
            tuple[str, str, tuple[str, ...]], Callable[[Any], Awaitable[None]]
        ] = {}
        self.handlers: dict[str, Handler] = {
            "version": self.version,
            "start": self.start,
            "register": self.register,
            "deregister": self.deregister,
            "batch_register": self.batch_register,
            "batch_deregister": self.batch_deregister,
            "list": self.list_instances,
            "get_service": self.get_service,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "list_services": self.list_services,
            "server_health": self.server_health,
            "connection_id": self.connection_id,
            "shutdown": self.shutdown,
        }

    # -- commands -------------------------------------------------------------------------

    async def version(self, args: dict[str, Any]) -> Any:
        return {"sdk": importlib.metadata.version(SDK_DISTRIBUTION), "python": sys.version}

    async def start(self, args: dict[str, Any]) -> Any:
        from v2.nacos import ClientConfigBuilder, GRPCConfig, NacosNamingService

        if self.naming is not None:
            raise RuntimeError("already started")
        grpc = GRPCConfig()
        if args.get("grpc_timeout_ms") is not None:
            grpc.grpc_timeout = int(args["grpc_timeout_ms"])
        if args.get("capability_negotiation_timeout_ms") is not None and hasattr(
            grpc, "capability_negotiation_timeout"
        ):
            grpc.capability_negotiation_timeout = int(args["capability_negotiation_timeout_ms"])
        self.namespace = str(args.get("namespace") or "")
        builder = (
            ClientConfigBuilder()
            .server_address(",".join(args["server_addresses"]))
            .namespace_id(self.namespace)
            .log_dir(str(args["log_dir"]))
            .cache_dir(str(args["cache_dir"]))
            .log_level(logging.DEBUG if args.get("debug") else logging.INFO)
            .grpc_config(grpc)
            # A cache left on disk by an earlier client would answer lists without the server.
            .load_cache_at_start(False)
        )
        if args.get("timeout_ms") is not None:
            builder.timeout_ms(int(args["timeout_ms"]))
        if args.get("username"):
            builder.username(str(args["username"])).password(str(args.get("password") or ""))
        config = builder.build()
        # The SDK's default drops a pushed empty list (keeps the last non-empty one); tests that
        # watch the last instance go need it, so it is on unless the caller says otherwise.
        config.update_cache_when_empty = bool(args.get("update_cache_when_empty", True))
        self.naming = await NacosNamingService.create_naming_service(config)
        # 2.0.9 raises when no server answers; 3.2.0 returns and reconnects in the background.
        # Both fail here alike unless the caller wants the 3.x behaviour.
        if self._connection_id() is None and not args.get("allow_disconnected"):
            raise ConnectionError("no connection to any server after start")
        return {
            "sdk": importlib.metadata.version(SDK_DISTRIBUTION),
            "connection_id": self._connection_id(),
        }

    async def register(self, args: dict[str, Any]) -> Any:
        from v2.nacos import RegisterInstanceParam

        return await self._naming().register_instance(RegisterInstanceParam(**instance_args(args)))

    async def deregister(self, args: dict[str, Any]) -> Any:
        from v2.nacos import DeregisterInstanceParam

        fields = instance_args(args)
        keep = ("ip", "port", "cluster_name", "service_name", "group_name", "ephemeral")
        return await self._naming().deregister_instance(
            DeregisterInstanceParam(**{k: v for k, v in fields.items() if k in keep})
        )

    async def batch_register(self, args: dict[str, Any]) -> Any:
        return await self._batch(args, "batch_register_instances")

    async def batch_deregister(self, args: dict[str, Any]) -> Any:
        return await self._batch(args, "batch_deregister_instances")  # 3.x only

    async def _batch(self, args: dict[str, Any], method: str) -> Any:
        from v2.nacos import BatchRegisterInstanceParam, RegisterInstanceParam

        naming = self._naming()
        if not hasattr(naming, method):
            raise NotImplementedError(f"{method} is not in this SDK version")
        service, group = args["service"], args.get("group") or "DEFAULT_GROUP"
        instances = [
            RegisterInstanceParam(**instance_args({"service": service, "group": group, **one}))
            for one in args["instances"]
        ]
        param = BatchRegisterInstanceParam(
            service_name=service, group_name=group, instances=instances
        )
        return await getattr(naming, method)(param)

    async def list_instances(self, args: dict[str, Any]) -> Any:
        from v2.nacos import ListInstanceParam

        param = ListInstanceParam(
            service_name=args["service"],
            group_name=args.get("group") or "DEFAULT_GROUP",
            clusters=list(args.get("clusters") or []),
            subscribe=bool(args.get("subscribe", True)),
            # Required (no default) in the SDK's model: None means "healthy and unhealthy".
            healthy_only=args.get("healthy_only"),
        )
        return [host_dict(h) for h in await self._naming().list_instances(param)]

    async def get_service(self, args: dict[str, Any]) -> Any:
        from v2.nacos import GetServiceParam

        param = GetServiceParam(
            service_name=args["service"],
            group_name=args.get("group") or "DEFAULT_GROUP",
            clusters=list(args.get("clusters") or []),
        )
        service = await self._naming().get_service(param)
        if service is None:
            return None
        return dict(service.model_dump(mode="json", exclude={"jsonFromServer"}))

    async def subscribe(self, args: dict[str, Any]) -> Any:
        from v2.nacos import SubscribeServiceParam

        service = str(args["service"])
        group = str(args.get("group") or "DEFAULT_GROUP")
        clusters = tuple(args.get("clusters") or ())
        key = (service, group, clusters)
        if key not in self.callbacks:

            async def on_push(instances: Any) -> None:
                emit(
                    {
                        "event": "push",
                        "service": service,
                        "group": group,
                        "clusters": list(clusters),
                        "hosts": [host_dict(h) for h in instances or []],
                        "t": time.time(),
                    }
                )

            self.callbacks[key] = on_push
        param = SubscribeServiceParam(
            service_name=service,
            group_name=group,
            clusters=list(clusters),
            subscribe_callback=self.callbacks[key],
        )
        await self._naming().subscribe(param)
        return True

    async def unsubscribe(self, args: dict[str, Any]) -> Any:
        from v2.nacos import SubscribeServiceParam

        service = str(args["service"])
        group = str(args.get("group") or "DEFAULT_GROUP")
        clusters = tuple(args.get("clusters") or ())
        callback = self.callbacks.pop((service, group, clusters), None)
        param = SubscribeServiceParam(
            service_name=service,
            group_name=group,
            clusters=list(clusters),
            subscribe_callback=callback,
        )
        await self._naming().unsubscribe(param)
        return True

    async def list_services(self, args: dict[str, Any]) -> Any:
        from v2.nacos import ListServiceParam

        param = ListServiceParam(
            namespace_id=args.get("namespace") or self.namespace or "public",
            group_name=args.get("group") or "DEFAULT_GROUP",
            page_no=int(args.get("page_no", 1)),
            page_size=int(args.get("page_size", 10)),
        )
        result = await self._naming().list_services(param)
        return {"count": result.count, "services": list(result.services)}

    async def server_health(self, args: dict[str, Any]) -> Any:
        return bool(await self._naming().server_health())

    async def connection_id(self, args: dict[str, Any]) -> Any:
        return self._connection_id()

    async def shutdown(self, args: dict[str, Any]) -> Any:
        if self.naming is not None:
            naming, self.naming = self.naming, None
            await naming.shutdown()
        return True

    # -- helpers --------------------------------------------------------------------------

    def _naming(self) -> Any:
        if self.naming is None:
            raise RuntimeError("not started: send start first")
        return self.naming

    def _connection_id(self) -> str | None:
        try:
            connection = self.naming.grpc_client_proxy.rpc_client.current_connection
            return str(connection.get_connection_id()) if connection is not None else None
        except AttributeError:  # internals differ between versions; the id is informative only
            return None


def instance_args(args: dict[str, Any]) -> dict[str, Any]:
    """The driver's argument names (service, group, cluster) to the SDK's parameter names."""
    fields: dict[str, Any] = {
        "service_name": args["service"],
        "group_name": args.get("group") or "DEFAULT_GROUP",
        "ip": args["ip"],
        "port": int(args["port"]),
        "cluster_name": args.get("cluster") or "",
    }
    for name in ("weight", "ephemeral", "healthy", "enabled", "metadata"):
        if args.get(name) is not None:
            fields[name] = args[name]
    return fields


async def serve() -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        # A plain thread: asyncio's pipe readers need a pipe, and stdin may be anything.
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, name="stdin-reader", daemon=True).start()
    driver = Driver()
    emit({"event": "ready", "pid": os.getpid()})
    while True:
        line = await lines.get()
        if line is None:
            break
        if not line.strip():
            continue
        request_id: Any = None
        try:
            message = json.loads(line)
            request_id = message.get("id")
            handler = driver.handlers.get(message.get("cmd", ""))
            if handler is None:
                raise ValueError(f"unknown command {message.get('cmd')!r}")
            args = dict(message.get("args") or {})
            timeout = float(args.pop("timeout_s", DEFAULT_TIMEOUT_S))
            result = await asyncio.wait_for(handler(args), timeout)
            emit({"id": request_id, "ok": True, "result": result})
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            emit({"id": request_id, "ok": False, "error": describe(exc)})
            continue
        if message.get("cmd") == "shutdown":
            break
    try:
        await asyncio.wait_for(driver.shutdown({}), 10)
    except Exception:
        traceback.print_exc(file=sys.stderr)


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
