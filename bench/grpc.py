"""``python3 dev.py bench-grpc`` (issue #12): the Nacos 2.x gRPC edge, measured three ways.

1. **Throughput** on one node, auth off and auth on (a user without the admin role holding
   ``rw`` on public; the token in the metadata headers and the JSON ``headers``, as the SDK sends
   it): ``InstanceRequest`` register of distinct instances, ``SubscribeServiceRequest`` of a
   100-instance service (what the SDK's ``list_instances`` sends) and ``HealthCheckRequest`` (the
   protocol's own floor), beside the FLOOR: an empty unary call on a grpc.aio server started here
   in its own process with the edge's options (``server_options``) on the same loop kind (the
   default asyncio loop), answering a constant ``HealthCheckResponse``. The load comes from one
   generator process (grpc.aio, ``--channels`` connections per target, ``--inflight`` calls in
   flight on each), the raw ``Payload`` bytes built once (``facades.nacos_v2.wire``). Each target
   runs ``--seconds`` per round, ``--rounds`` rounds with the order rotated; medians are reported
   with the ratios register/floor and query/floor (median of the per-round ratios) and the
   server's CPU per call (utime + stime of its PID from /proc over the run).
2. **Push latency**: a raw subscriber (ServerCheck, bi-stream setup, SubscribeServiceRequest,
   acking every ``NotifySubscriberRequest``) and a writer registering and deregistering one
   instance in turn; latency from the write's send (and from its answer) to the push carrying the
   new host count, p50/p99 over ``--changes`` changes: on the standalone node, and on a 3-member
   cluster with the writer on C and the subscriber on B (half the changes on a service C owns,
   half on one the third member owns, so the write is forwarded before it is synced).
3. **Capacity**: ``--clients`` connections (one channel each, from two generator processes)
   holding 5 instances each, each sending ``HealthCheckRequest`` every 5 s (the SDK's keepalive,
   spread evenly) for ``--hold`` seconds: the node's CPU (% of one core, sampled every second
   over the steady state), RSS per connection and per instance (/proc, before and after each
   step) and the node's own ``grpc`` metrics (operator/metrics). The node runs with
   ``NAMING_LEASE_GRACE_S`` = ``--lease-grace`` (10 s) and the hold starts once that window has
   passed: a node walks its leased instances (every 10 s) for ``grace + 2`` s after it starts,
   and with the default 180 s the whole hold would be that start-up window. Then the same
   clients at the same pace against the floor server (``capacity_floor``): what grpc.aio itself
   costs per call when calls come one at a time over many connections.

``--quick`` shrinks every phase (about two minutes in all, most of it starting nodes).
Results: ``bench/results/grpc.json``. Every process started here is stopped by its PID in
``finally``; every wait is bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder leads sys.path and its name would shadow the grpc package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import IO, Any  # noqa: E402

import grpc  # noqa: E402

from facades.nacos_v2 import wire  # noqa: E402
from facades.nacos_v2.server import server_options  # noqa: E402
from lib.limits import raise_fd_limit  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "grpc.json"
GRPC_OFFSET = 1000
GROUP = "DEFAULT_GROUP"
QUERY_SERVICE = "bench-query"
QUERY_SIZE = 100
MAX_MESSAGE = 10 * 1024 * 1024

# The targets.
REGISTER_RATIO = 0.4
QUERY_RATIO = 0.6
PUSH_P99_MS = 100.0
PUSH_CLUSTER_P99_MS = 200.0
CAPACITY_CPU_PCT = 25.0


# -- pure parts (tests/unit/test_bench_grpc.py) ----------------------------------------------


def request(type_name: str, body: dict[str, Any], token: str = "", request_id: str = "1") -> bytes:
    """A request's ``Payload`` bytes as the Python SDK sends them: the token (if any) in the
    metadata headers and in the JSON ``headers``."""
    headers = {"accessToken": token} if token else {}
    full = {"headers": dict(headers), "requestId": request_id, "module": "naming", **body}
    return wire.encode(type_name, full, headers or None)


def instance_body(i: int, port: int = 8080) -> dict[str, Any]:
    return {
        "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "port": port,
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": True,
        "clusterName": "DEFAULT",
        "metadata": {},
    }


def register_request(
    i: int, service: str, token: str = "", kind: str = "registerInstance", port: int = 8080
) -> bytes:
    body = {
        "namespace": "public",
        "serviceName": service,
        "groupName": GROUP,
        "type": kind,
        "instance": instance_body(i, port),
    }
    return request("InstanceRequest", body, token, str(i))


def subscribe_request(service: str, token: str = "", subscribe: bool = True) -> bytes:
    body = {
        "namespace": "public",
        "serviceName": service,
        "groupName": GROUP,
        "clusters": "",
        "subscribe": subscribe,
    }
    return request("SubscribeServiceRequest", body, token)


def health_request() -> bytes:
    return request("HealthCheckRequest", {})


def answer_ok(data: bytes) -> bool:
    """A node's answer is a success (``resultCode`` 200). A byte search, not a decode: the
    generator shares the cores with the node, and parsing a 100-host answer's JSON would charge
    the query workload the client's work."""
    return b'"resultCode":200,' in data


def rotated(items: Sequence[str], round_no: int) -> list[str]:
    """The order of round ``round_no``: the starting item moves one place each round."""
    k = round_no % len(items) if items else 0
    return [*items[k:], *items[:k]]


def host_count(push: dict[str, Any]) -> int:
    """How many hosts a ``NotifySubscriberRequest`` body carries."""
    info = push.get("serviceInfo")
    hosts = info.get("hosts") if isinstance(info, dict) else None
    return len(hosts) if isinstance(hosts, list) else 0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (of any order); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[min(int(rank), len(ordered)) - 1]


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max of durations in seconds, in milliseconds."""
    return {
        "count": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000 if seconds else float("nan"),
    }


def medians(rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    """The median of every numeric figure over rounds (keys of the first round)."""
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def ratio_medians(
    rounds: Sequence[dict[str, dict[str, float]]], base: str, key: str = "calls_per_s"
) -> dict[str, float]:
    """Per target, the median over rounds of its ``key`` divided by ``base``'s in that round."""
    return {
        name: statistics.median(r[name][key] / r[base][key] for r in rounds if r[base][key] > 0)
        for name in rounds[0]
        if name != base
    }


def keepalive_offsets(clients: int, interval: float) -> list[float]:
    """When client ``i`` sends its first health check: spread evenly over one interval, so the
    load is flat (each then repeats every ``interval``)."""
    return [i * interval / clients for i in range(clients)]


def cpu_pct(samples: Sequence[tuple[float, float]]) -> list[float]:
    """Per-interval CPU as % of one core from (wall s, CPU s) samples."""
    return [
        100.0 * (c1 - c0) / (t1 - t0)
        for (t0, c0), (t1, c1) in itertools.pairwise(samples)
        if t1 > t0
    ]


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- a raw client ------------------------------------------------------------------------------


def channel_options() -> list[tuple[str, Any]]:
    # A local subchannel pool: channels to one target would otherwise share one TCP connection,
    # and the edge keys its connections by the transport's peer.
    return [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]


@dataclass
class RawClient:
    """One SDK-like connection: its own channel, ServerCheck, the bi-stream set up, every push
    and probe on the stream answered. ``pushes`` gets (arrival time, body) of each push."""

    target: str
    token: str = ""
    channel: Any = None
    unary: Any = None
    stream: Any = None
    reader: asyncio.Task[None] | None = None
    connection_id: str = ""
    pushes: asyncio.Queue[tuple[float, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    push_count: int = 0
    probes: int = 0

    async def open(self, setup_timeout: float = 20.0) -> RawClient:
        self.channel = grpc.aio.insecure_channel(self.target, options=channel_options())
        self.unary = self.channel.unary_unary("/Request/request")
        check = wire.decode(await self.unary(request("ServerCheckRequest", {}), timeout=10))
        if check.body.get("resultCode") != 200:
            raise RuntimeError(f"ServerCheck refused: {check.body}")
        self.connection_id = str(check.body.get("connectionId"))
        self.stream = self.channel.stream_stream("/BiRequestStream/requestBiStream")()
        setup = {
            "clientVersion": "Nacos-Python-Client:bench",
            "tenant": "",
            "labels": {"source": "sdk", "module": "naming"},
            "abilityTable": {},
        }
        await self.stream.write(request("ConnectionSetupRequest", setup, self.token))
        self.reader = asyncio.ensure_future(self._read())
        # The edge registers the connection when it reads the setup: until then UN_REGISTER.
        deadline = time.monotonic() + setup_timeout
        while not answer_ok(await self.unary(health_request(), timeout=10)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"connection {self.connection_id} never set up")
            await asyncio.sleep(0.02)
        return self

    async def call(self, data: bytes, timeout: float = 10.0) -> dict[str, Any]:
        return wire.decode(await self.unary(data, timeout=timeout)).body

    async def _read(self) -> None:
        try:
            while True:
                data = await self.stream.read()
                if data is grpc.aio.EOF:
                    return
                arrived = time.perf_counter()
                inbound = wire.decode(data)
                rid = str(inbound.body.get("requestId", ""))
                ack = {"resultCode": 200, "errorCode": 0, "requestId": rid, "headers": {}}
                if inbound.type == "NotifySubscriberRequest":
                    self.push_count += 1
                    await self.stream.write(wire.encode("NotifySubscriberResponse", ack))
                    self.pushes.put_nowait((arrived, inbound.body))
                elif inbound.type == "ClientDetectionRequest":
                    self.probes += 1
                    await self.stream.write(wire.encode("ClientDetectionResponse", ack))
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            return

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.channel is not None:
            await self.channel.close()


# -- the floor server (a child process) --------------------------------------------------------


async def serve_floor(port: int) -> None:
    constant = wire.encode(
        "HealthCheckResponse", {"resultCode": 200, "errorCode": 0, "message": "", "requestId": ""}
    )

    async def empty(data: bytes, context: Any) -> bytes:
        return constant

    server = grpc.aio.server(options=server_options(MAX_MESSAGE))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "Request", {"request": grpc.unary_unary_rpc_method_handler(empty)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


# -- the throughput generator (a child process, driven over stdin) ------------------------------


@dataclass
class Target:
    """One measured workload: where, the payloads cycled through, and its open clients."""

    name: str
    address: str
    kind: str  # floor | health | register | query
    token: str = ""
    payloads: list[bytes] = field(default_factory=list)
    next_payload: int = 0
    clients: list[RawClient] = field(default_factory=list)


async def open_target(spec: dict[str, Any], channels: int) -> Target:
    t = Target(spec["name"], spec["address"], spec["kind"], spec.get("token", ""))
    if t.kind == "floor":
        for _ in range(channels):
            c = RawClient(t.address)
            c.channel = grpc.aio.insecure_channel(t.address, options=channel_options())
            c.unary = c.channel.unary_unary("/Request/request")
            t.clients.append(c)
        t.payloads = [health_request()]
        return t
    t.clients = list(
        await asyncio.gather(*(RawClient(t.address, t.token).open() for _ in range(channels)))
    )
    if t.kind == "health":
        t.payloads = [health_request()]
    elif t.kind == "register":
        # Distinct instances in 100 services; a run that wraps around re-registers.
        t.payloads = [
            register_request(i, f"bench-reg-{i % 100}", t.token) for i in range(spec["distinct"])
        ]
    elif t.kind == "query":
        holder = t.clients[0]
        for i in range(QUERY_SIZE):
            answer = await holder.call(register_request(i, QUERY_SERVICE, t.token, port=9000))
            if answer.get("resultCode") != 200:
                raise RuntimeError(f"query fixture: {answer}")
        t.payloads = [subscribe_request(QUERY_SERVICE, t.token)]
    else:
        raise ValueError(t.kind)
    return t


async def run_target(t: Target, seconds: float, inflight: int) -> dict[str, Any]:
    """Closed loop: ``inflight`` calls in flight on every client for ``seconds``."""
    ok = errors = 0
    latencies: list[float] = []
    samples: list[str] = []
    check = t.kind != "floor"
    n = len(t.payloads)
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(client: RawClient) -> None:
        nonlocal ok, errors
        unary = client.unary
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            data = t.payloads[t.next_payload % n]
            t.next_payload += 1
            try:
                out = await unary(data, timeout=10)
            except grpc.aio.AioRpcError as exc:
                errors += 1
                if len(samples) < 5:
                    samples.append(str(exc.code()))
                continue
            latencies.append(time.perf_counter() - sent)
            if not check or answer_ok(out):
                ok += 1
            else:
                errors += 1
                if len(samples) < 5:
                    samples.append(out[:200].decode(errors="replace"))

    own = cpu_seconds_of(os.getpid())
    await asyncio.gather(*(worker(c) for c in t.clients for _ in range(inflight)))
    elapsed = time.perf_counter() - start
    return {
        "calls": ok,
        "errors": errors,
        "seconds": elapsed,
        "calls_per_s": ok / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "generator_cpu_s": cpu_seconds_of(os.getpid()) - own,
        "error_samples": samples,
    }


async def generate(spec: dict[str, Any]) -> None:
    """Open every target, say ``ready``, then run one ``{"target", "seconds"}`` per stdin line
    and answer each with one JSON line; an empty line or EOF ends it."""
    targets = {}
    for t in spec["targets"]:
        targets[t["name"]] = await open_target(t, spec["channels"])
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        cmd = json.loads(line)
        result = await run_target(targets[cmd["target"]], cmd["seconds"], spec["inflight"])
        print(json.dumps(result), flush=True)
    for t in targets.values():
        for c in t.clients:
            await c.close()


class Child:
    """A child process of this script (or of ``script``: bench/watch.py) speaking JSON lines on
    stdin/stdout; stopped by PID."""

    def __init__(self, *args: str, script: str = __file__) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str, timeout: float = 300.0) -> str:
        """The child's next line, which must start with ``word`` (bounded by ``timeout``)."""
        out = self.proc.stdout
        assert out is not None
        line = _readline(out, timeout)
        if not line.startswith(word):
            raise RuntimeError(f"child {self.pid} said {line!r}, expected {word!r}")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(json.dumps(command))
        out = self.proc.stdout
        assert out is not None
        result: dict[str, Any] = json.loads(_readline(out, timeout))
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("")
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def _readline(stream: IO[str], timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"no answer within {timeout} s")
    line = stream.readline()
    if not line:
        raise RuntimeError("child exited")
    return line.strip()


# -- phase 1: throughput -------------------------------------------------------------------------


def start_node(base: Path, name: str, **env: str) -> Any:
    from bench.run import bench_env
    from testkit.harness import NodeProcess

    return NodeProcess(base / name, env=bench_env(NAMING_SWEEP_ENABLED="false", **env)).start()


def grpc_address(node: Any) -> str:
    return f"{node.host}:{node.port + GRPC_OFFSET}"


def profiler(
    args: argparse.Namespace, pid: int, name: str, seconds: float
) -> subprocess.Popen[bytes] | None:
    """With ``--profile DIR``: py-spy on the server for this run (raw folded stacks, 100 Hz;
    the sampling slows the server a little, so a profiled run's figures are not quoted)."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"{name}.raw"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "-r", "100", "-f", "raw", "-p", str(pid), "-o", str(out)]
    command += ["-d", str(max(1, int(seconds) - 1))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from bench.run import user_token
    from testkit.harness import free_port

    nodes: list[Any] = []
    floor: Child | None = None
    gen: Child | None = None
    try:
        off = start_node(base, "auth-off", NAMING_AUTH_ENABLED="false")
        nodes.append(off)
        on = start_node(base, "auth-on")
        nodes.append(on)
        token = user_token(on)
        port = free_port()
        floor = Child("--serve-floor", str(port))
        floor.expect("ready", 30)
        distinct = args.distinct
        specs = [{"name": "floor", "address": f"127.0.0.1:{port}", "kind": "floor"}]
        pids = {"floor": floor.pid}
        for auth, node, tok in (("off", off, ""), ("on", on, token)):
            for kind in ("health", "register", "query"):
                name = f"{kind}_auth_{auth}"
                specs.append(
                    {
                        "name": name,
                        "address": grpc_address(node),
                        "kind": kind,
                        "token": tok,
                        "distinct": distinct,
                    }
                )
                pids[name] = node.proc.pid
        spec = {"targets": specs, "channels": args.channels, "inflight": args.inflight}
        gen = Child("--generate", json.dumps(spec))
        gen.expect("ready", 120)
        specs = [s for s in specs if s["name"] in args.targets or s["kind"] == "floor"]
        names = [s["name"] for s in specs]
        print(
            f"throughput: floor PID {floor.pid}, auth off PID {off.proc.pid}, auth on PID "
            f"{on.proc.pid}",
            flush=True,
        )
        # Warm-up: every target once, briefly (connections, caches, the JIT-less first calls).
        for name in names:
            gen.ask({"target": name, "seconds": min(1.0, args.seconds)}, 60)
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(args.rounds):
            row: dict[str, dict[str, Any]] = {}
            for name in rotated(names, r):
                pid = pids[name]
                spy = profiler(args, pid, name, args.seconds) if r == 0 else None
                before = cpu_seconds_of(pid)
                result = gen.ask({"target": name, "seconds": args.seconds}, args.seconds + 60)
                used = cpu_seconds_of(pid) - before
                if spy is not None:
                    spy.wait(60)
                result["server_cpu_us_per_call"] = used / max(result["calls"], 1) * 1e6
                result["server_cpu_pct"] = 100 * used / result["seconds"]
                row[name] = result
            rounds.append(row)
            print(
                f"round {r + 1}: " + ", ".join(f"{n} {row[n]['calls_per_s']:.0f}/s" for n in names),
                flush=True,
            )
        figures = {
            name: medians(
                [{k: v for k, v in r[name].items() if k != "error_samples"} for r in rounds]
            )
            for name in names
        }
        ratios = ratio_medians(rounds, "floor")
        samples = {n: r[n]["error_samples"] for r in rounds for n in names if r[n]["errors"]}
        return {
            "channels": args.channels,
            "inflight_per_channel": args.inflight,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "medians": figures,
            "ratio_to_floor": ratios,
            "error_samples": samples,
            "per_round": rounds,
            "pids": {"floor": floor.pid, "auth_off": off.proc.pid, "auth_on": on.proc.pid},
        }
    finally:
        if gen is not None:
            gen.stop()
        if floor is not None:
            floor.proc.kill()
            floor.proc.wait(10)
        for node in nodes:
            node.stop()
            node.kill9()


# -- phase 2: push latency -----------------------------------------------------------------------


async def push_latency(
    sub_address: str,
    writer_address: str,
    token: str,
    services: Sequence[str],
    changes: int,
    gap_s: float,
    timeout_s: float = 3.0,
) -> dict[str, Any]:
    """Alternately register and deregister one instance per service through the writer;
    per change, the time until the subscriber holds a push with the new host count."""
    sub = await RawClient(sub_address, token).open()
    writer = await RawClient(writer_address, token).open()
    from_send: list[float] = []
    from_answer: list[float] = []
    by_service: dict[str, list[float]] = {s: [] for s in services}
    missed = 0
    try:
        for service in services:
            answer = await sub.call(subscribe_request(service, token))
            if answer.get("resultCode") != 200:
                raise RuntimeError(f"subscribe: {answer}")
        for k in range(changes):
            service = services[k % len(services)]
            present = (k // len(services)) % 2 == 0
            kind = "registerInstance" if present else "deregisterInstance"
            while not sub.pushes.empty():  # nothing stale may satisfy this change
                sub.pushes.get_nowait()
            sent = time.perf_counter()
            answer = await writer.call(register_request(7, service, token, kind))
            answered = time.perf_counter()
            if answer.get("resultCode") != 200:
                raise RuntimeError(f"write: {answer}")
            want = 1 if present else 0
            deadline = sent + timeout_s
            arrived = None
            while arrived is None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    at, body = await asyncio.wait_for(sub.pushes.get(), left)
                except TimeoutError:
                    break
                if body.get("serviceName") == service and host_count(body) == want:
                    arrived = at
            if arrived is None:
                missed += 1
            else:
                from_send.append(arrived - sent)
                from_answer.append(arrived - answered)
                by_service[service].append(arrived - sent)
            await asyncio.sleep(gap_s)
    finally:
        await sub.close()
        await writer.close()
    return {
        "changes": changes,
        "missed": missed,
        "from_send": summarize_ms(from_send),
        "from_answer": summarize_ms(from_answer),
        "by_service": {s: summarize_ms(v) for s, v in by_service.items()},
        "pushes_received": sub.push_count,
    }


def push_standalone(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from bench.run import user_token

    node = start_node(base, "push")
    try:
        token = user_token(node)
        address = grpc_address(node)
        result = asyncio.run(
            push_latency(address, address, token, ["bench-push"], args.changes, args.gap)
        )
        result["grpc"] = grpc_metrics(node)["push"]
        return result
    finally:
        node.stop()
        node.kill9()


def push_cluster(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from bench.distro import healthy_members, owned_services
    from bench.run import bench_env, user_token
    from testkit.harness import make_cluster, stop_cluster, wait_for

    nodes = make_cluster(base / "cluster", 3, env=bench_env(NAMING_SWEEP_ENABLED="false"))
    try:
        a, b, c = nodes
        wait_for(lambda: len(healthy_members(a)) == 3, 60, message="3 healthy members")
        token = user_token(c)
        healthy = healthy_members(a)
        via_writer = owned_services(healthy, c.address, "bench-push-c", 1)[0]
        via_third = owned_services(healthy, a.address, "bench-push-a", 1)[0]
        result = asyncio.run(
            push_latency(
                grpc_address(b),
                grpc_address(c),
                token,
                [via_writer, via_third],
                args.changes,
                args.gap,
            )
        )
        result["services"] = {"owned_by_writer": via_writer, "owned_by_third": via_third}
        return result
    finally:
        stop_cluster(nodes)


# -- phase 3: capacity ---------------------------------------------------------------------------


async def hold(spec: dict[str, Any]) -> None:
    """A capacity generator: connect ``clients`` raw clients (``connected``), register 5
    instances each on ``register`` (``registered``), then a health check per client every
    ``interval`` until a line ``stop`` (or ``seconds`` more); then one JSON line of figures."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    first, count, interval = spec["first"], spec["clients"], spec["interval"]
    gate = asyncio.Semaphore(32)

    async def connect() -> RawClient:
        async with gate:
            client = RawClient(spec["address"], spec["token"])
            if not spec.get("floor"):
                return await client.open(60)
            # The floor server knows no protocol: a channel, connected by its first call.
            client.channel = grpc.aio.insecure_channel(client.target, options=channel_options())
            client.unary = client.channel.unary_unary("/Request/request")
            await client.unary(health_request(), timeout=30)
            return client

    clients = list(await asyncio.gather(*(connect() for _ in range(count))))
    print("connected", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    async def register(k: int, client: RawClient) -> None:
        async with gate:
            for j in range(5):
                i = (first + k) * 5 + j
                service = f"cap-{i % spec['services']}"
                answer = await client.call(register_request(i, service, spec["token"]))
                if answer.get("resultCode") != 200:
                    raise RuntimeError(f"register: {answer}")

    if not spec.get("floor"):
        await asyncio.gather(*(register(k, c) for k, c in enumerate(clients)))
    print("registered", flush=True)
    sent = ok = errors = 0
    latencies: list[float] = []
    data = health_request()
    stop = asyncio.Event()

    async def keepalive(client: RawClient, offset: float) -> None:
        nonlocal sent, ok, errors
        try:
            await asyncio.wait_for(stop.wait(), offset)
        except TimeoutError:
            pass
        while not stop.is_set():
            started = time.perf_counter()
            sent += 1
            try:
                out = await client.unary(data, timeout=10)
                latencies.append(time.perf_counter() - started)
                if answer_ok(out):
                    ok += 1
                else:
                    errors += 1
            except grpc.aio.AioRpcError:
                errors += 1
            try:
                await asyncio.wait_for(stop.wait(), interval - (time.perf_counter() - started))
            except TimeoutError:
                pass

    offsets = keepalive_offsets(count, interval)
    tasks = [asyncio.ensure_future(keepalive(c, o)) for c, o in zip(clients, offsets, strict=True)]
    own = cpu_seconds_of(os.getpid())
    started = time.perf_counter()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "clients": count,
                "health_sent": sent,
                "health_ok": ok,
                "health_errors": errors,
                "latency": summarize_ms(latencies),
                "probes_answered": sum(c.probes for c in clients),
                "generator_cpu_pct": 100 * (cpu_seconds_of(os.getpid()) - own) / elapsed,
            }
        ),
        flush=True,
    )
    for c in clients:
        await c.close()


def grpc_metrics(node: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = node.request("GET", "/nacos/v1/ns/operator/metrics").json()
    return dict(metrics["grpc"])


def sample_cpu(
    pid: int, gens: Sequence[Child], seconds: float
) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    """(wall, CPU seconds) of ``pid`` and of each generator, every second for ``seconds``."""
    samples: list[tuple[float, float]] = []
    gen_samples: list[list[tuple[float, float]]] = [[] for _ in gens]
    end = time.perf_counter() + seconds
    while True:
        now = time.perf_counter()
        samples.append((now, cpu_seconds_of(pid)))
        for g, s in zip(gens, gen_samples, strict=True):
            s.append((now, cpu_seconds_of(g.pid)))
        if now >= end:
            return samples, gen_samples
        time.sleep(min(1.0, end - now))


def start_holders(address: str, token: str, args: argparse.Namespace, floor: bool) -> list[Child]:
    per = [args.clients // args.generators] * args.generators
    per[0] += args.clients - sum(per)
    gens, first = [], 0
    for n in per:
        spec = {
            "address": address,
            "token": token,
            "first": first,
            "clients": n,
            "interval": args.interval,
            "services": args.services,
            "floor": floor,
        }
        first += n
        gens.append(Child("--hold-clients", json.dumps(spec)))
    return gens


def capacity_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same clients and keepalive pace against the empty-call floor server: what grpc.aio
    itself costs per call when calls arrive one at a time over many connections."""
    from testkit.harness import free_port

    port = free_port()
    floor = Child("--serve-floor", str(port))
    gens: list[Child] = []
    try:
        floor.expect("ready", 30)
        gens = start_holders(f"127.0.0.1:{port}", "", args, True)
        for g in gens:
            g.expect("connected", 600)
        for g in gens:
            g.send("register")
        for g in gens:
            g.expect("registered", 600)
        samples, _ = sample_cpu(floor.pid, gens, args.hold)
        for g in gens:
            g.send("stop")
        reports = [json.loads(g.expect("{", 120)) for g in gens]
        per_second = cpu_pct(samples)
        steady = per_second[min(int(args.interval), len(per_second) // 2) :]
        calls = sum(r["health_ok"] for r in reports)
        return {
            "clients": args.clients,
            "median_pct": statistics.median(steady) if steady else float("nan"),
            "per_call_us": (samples[-1][1] - samples[0][1]) / max(calls, 1) * 1e6,
            "calls": calls,
        }
    finally:
        for g in [*gens, floor]:
            if g.proc.poll() is None:
                g.proc.kill()
                g.proc.wait(10)


def capacity(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from bench.run import user_token

    # A node walks its leased instances (every 10 s) for ``grace + 2`` seconds after it starts
    # (they may be its previous life's); a short grace lets the hold see the steady state.
    node = start_node(base, "capacity", NAMING_LEASE_GRACE_S=str(args.lease_grace))
    node_started = time.monotonic()
    gens: list[Child] = []
    try:
        pid = node.proc.pid
        token = user_token(node)
        idle_samples = []
        for _ in range(4):  # the node's own CPU with no client: its loops and threads
            idle_samples.append((time.perf_counter(), cpu_seconds_of(pid)))
            time.sleep(1)
        idle_pct = cpu_pct([idle_samples[0], idle_samples[-1]])[0]
        rss_idle = rss_kb(pid)
        started = time.perf_counter()
        gens = start_holders(grpc_address(node), token, args, False)
        for g in gens:
            g.expect("connected", 600)
        connect_s = time.perf_counter() - started
        time.sleep(2)
        rss_connected = rss_kb(pid)
        for g in gens:
            g.send("register")
        for g in gens:
            g.expect("registered", 600)
        time.sleep(2)
        rss_registered = rss_kb(pid)
        print(
            f"capacity: {args.clients} clients connected in {connect_s:.1f} s, "
            f"{args.clients * 5} instances registered; holding {args.hold:.0f} s (node PID {pid})",
            flush=True,
        )
        time.sleep(max(0.0, node_started + args.lease_grace + 3 - time.monotonic()))
        spy = profiler(args, pid, "capacity", args.hold)
        samples, gen_samples = sample_cpu(pid, gens, args.hold)
        metrics = grpc_metrics(node)
        rss_end = rss_kb(pid)
        if spy is not None:
            spy.wait(60)
        for g in gens:
            g.send("stop")
        reports = [json.loads(g.expect("{", 120)) for g in gens]
        per_second = cpu_pct(samples)
        steady = per_second[min(int(args.interval), len(per_second) // 2) :]  # warm-up out
        whole = cpu_pct([samples[0], samples[-1]])
        conns = metrics["connections"]
        return {
            "clients": args.clients,
            "instances": args.clients * 5,
            "generators": args.generators,
            "interval_s": args.interval,
            "hold_s": args.hold,
            "lease_grace_s": args.lease_grace,
            "connect_s": round(connect_s, 1),
            "node_cpu": {
                "median_pct": statistics.median(steady) if steady else float("nan"),
                "max_pct": max(steady) if steady else float("nan"),
                "mean_pct": whole[0] if whole else float("nan"),
                "idle_pct": idle_pct,
                "per_health_check_us": (
                    (samples[-1][1] - samples[0][1])
                    / max(sum(r["health_ok"] for r in reports), 1)
                    * 1e6
                ),
            },
            "generator_cpu_pct": [statistics.median(cpu_pct(s)) for s in gen_samples],
            "rss_kb": {
                "idle": rss_idle,
                "connected": rss_connected,
                "registered": rss_registered,
                "end": rss_end,
            },
            "bytes_per_connection": (rss_connected - rss_idle) * 1024 / max(conns, 1),
            "bytes_per_instance": (rss_registered - rss_connected) * 1024 / (args.clients * 5),
            "generators_report": reports,
            "grpc": metrics,
        }
    finally:
        for g in gens:
            if g.proc.poll() is None:
                g.proc.kill()
                g.proc.wait(10)
        node.stop()
        node.kill9()


# -- the report ----------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    tp = results.get("throughput")
    if tp:
        for auth in ("off", "on"):
            for kind, target in (("register", REGISTER_RATIO), ("query", QUERY_RATIO)):
                ratio = tp["ratio_to_floor"].get(f"{kind}_auth_{auth}")
                if ratio is None:
                    continue
                rows.append(
                    (f"{kind}/floor >= {target} (auth {auth})", f"{ratio:.2f}", ratio >= target)
                )
    for key, limit, label in (
        ("push_standalone", PUSH_P99_MS, "push p99 standalone"),
        ("push_cluster", PUSH_CLUSTER_P99_MS, "push p99 via another member"),
    ):
        push = results.get(key)
        if push:
            p99 = push["from_send"]["p99_ms"]
            rows.append(
                (
                    f"{label} <= {limit:.0f} ms",
                    f"{p99:.1f} ms ({push['missed']} missed)",
                    p99 <= limit and push["missed"] == 0,
                )
            )
    cap = results.get("capacity")
    if cap:
        cpu = cap["node_cpu"]["median_pct"]
        rows.append(
            (
                f"{cap['clients']} clients, {cap['instances']} instances: node CPU <= "
                f"{CAPACITY_CPU_PCT:.0f} %",
                f"{cpu:.1f} %",
                cpu <= CAPACITY_CPU_PCT,
            )
        )
    return rows


def report(results: dict[str, Any]) -> None:
    tp = results.get("throughput")
    if tp:
        print(
            f"\nthroughput ({tp['channels']} channels x {tp['inflight_per_channel']} in "
            f"flight, {tp['seconds']} s x {tp['rounds']} rounds, medians):"
        )
        print(
            f"  {'target':<20} {'calls/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'srv us/call':>11} {'errors':>6}"
        )
        for name, m in tp["medians"].items():
            ratio = tp["ratio_to_floor"].get(name, 1.0)
            print(
                f"  {name:<20} {m['calls_per_s']:>8.0f} {ratio:>6.2f} {m['p50_ms']:>7.1f} "
                f"{m['p99_ms']:>7.1f} {m['server_cpu_us_per_call']:>11.0f} "
                f"{m['errors']:>6.0f}"
            )
    for key, label in (("push_standalone", "standalone"), ("push_cluster", "write C, sub B")):
        push = results.get(key)
        if push:
            s, a = push["from_send"], push["from_answer"]
            print(
                f"\npush latency ({label}, {push['changes']} changes, {push['missed']} "
                f"missed): from send p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max "
                f"{s['max_ms']:.1f} ms; from answer p50 {a['p50_ms']:.1f} ms, "
                f"p99 {a['p99_ms']:.1f} ms"
            )
    cap = results.get("capacity")
    if cap:
        cpu, rss = cap["node_cpu"], cap["rss_kb"]
        print(
            f"\ncapacity: {cap['clients']} clients, {cap['instances']} instances, health "
            f"check every {cap['interval_s']} s for {cap['hold_s']} s: node CPU median "
            f"{cpu['median_pct']:.1f} % (max {cpu['max_pct']:.1f} %, "
            f"idle {cpu['idle_pct']:.1f} %), "
            f"{cpu['per_health_check_us']:.0f} us per health check; RSS "
            f"{rss['idle'] // 1024} -> {rss['connected'] // 1024} -> "
            f"{rss['registered'] // 1024} MB: {cap['bytes_per_connection'] / 1024:.1f} KB per "
            f"connection, {cap['bytes_per_instance']:.0f} B per instance"
        )
        floor = results.get("capacity_floor")
        if floor:
            print(
                f"  the floor server at the same pace: {floor['median_pct']:.1f} % CPU, "
                f"{floor['per_call_us']:.0f} us per call"
            )
        for r in cap["generators_report"]:
            print(
                f"  generator: {r['health_ok']}/{r['health_sent']} health checks ok, "
                f"p99 {r['latency']['p99_ms']:.1f} ms, {r['generator_cpu_pct']:.0f} % CPU"
            )
    print("\ntargets (issue #12):")
    for target, measured, met in verdicts(results):
        print(f"  {'met   ' if met else 'MISSED'} {target}: {measured}")


PHASES = ("throughput", "push", "cluster", "capacity", "capacity-floor")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--quick", action="store_true", help="every phase shrunk: about a minute")
    parser.add_argument("--skip", nargs="*", default=[], choices=PHASES)
    parser.add_argument("--seconds", type=float, default=None, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--inflight", type=int, default=16, help="calls in flight per channel")
    parser.add_argument(
        "--targets",
        nargs="*",
        default=[f"{k}_auth_{a}" for a in ("off", "on") for k in ("health", "register", "query")],
        help="throughput: which of <health|register|query>_auth_<off|on> (the floor always)",
    )
    parser.add_argument(
        "--profile", help="py-spy the servers (throughput round 1, the capacity hold) into DIR"
    )
    parser.add_argument("--distinct", type=int, default=None, help="register: instances cycled")
    parser.add_argument("--changes", type=int, default=None, help="push: changes measured")
    parser.add_argument("--gap", type=float, default=0.05, help="push: seconds between changes")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="health check period, s")
    parser.add_argument(
        "--lease-grace",
        type=float,
        default=10.0,
        help="capacity: the node's NAMING_LEASE_GRACE_S (its after-start scan window)",
    )
    parser.add_argument("--hold", type=float, default=None, help="capacity: seconds held")
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--hold-clients", dest="hold_spec", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.serve_floor is not None:
        asyncio.run(serve_floor(args.serve_floor))
        return 0
    if args.generate is not None:
        asyncio.run(generate(json.loads(args.generate)))
        return 0
    if args.hold_spec is not None:
        asyncio.run(hold(json.loads(args.hold_spec)))
        return 0
    quick = args.quick
    args.seconds = args.seconds or (1.0 if quick else 5.0)
    args.distinct = args.distinct or (20_000 if quick else 60_000)
    args.changes = args.changes or (20 if quick else 200)
    args.clients = args.clients or (400 if quick else 2000)
    args.hold = args.hold or (12.0 if quick else 60.0)
    raise_fd_limit()
    base = Path(tempfile.mkdtemp(prefix="naming-bench-grpc-"))
    results: dict[str, Any] = {"taken": time.strftime("%Y-%m-%d %H:%M"), "quick": quick}
    try:
        if "throughput" not in args.skip:
            results["throughput"] = throughput(args, base)
        if "push" not in args.skip:
            results["push_standalone"] = push_standalone(args, base)
        if "cluster" not in args.skip:
            results["push_cluster"] = push_cluster(args, base)
        if "capacity" not in args.skip:
            results["capacity"] = capacity(args, base)
        if "capacity-floor" not in args.skip:
            results["capacity_floor"] = capacity_floor(args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
