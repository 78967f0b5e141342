"""The hot path inside the process, without the network (issue #11 item 3).

``.venv/bin/python bench/inprocess.py`` builds an in-memory node (as ``tests/unit/conftest.py``
does, no sockets) with auth on, a user without the admin role holding ``rw`` on public and a
real access token, and calls the WSGI ``application`` of ``server/wsgi.py`` with environ dicts
built beforehand, one request after the other on this thread. Per endpoint:

* ``beat``: PUT ``/instance/beat`` with the SDK's ``beat`` JSON, 1,000 beating instances;
* ``register-new``: POST ``/instance``, a new instance each time, into 100 services;
* ``register-update``: the same request again for an instance that exists (an SDK re-register);
* ``list``: GET ``/instance/list`` of a 100-instance service;
* ``forward-owner``: the owner's side of a forwarded register: a signed POST, as
  ``facades/nacos_v1/forward.py`` sends it from a non-owner member, on a node in cluster mode
  (its peer never answers: no sync is sent, the changed keys only queue up).

Prints the median over ``--rounds`` (scenarios interleaved in each round) of the mean µs per
request, then, with ``--profile``, a cProfile of each scenario: the time per request spent in
each stage (parameters, authentication, authorization, operation, store, notifier and
listeners, rendering) and the top functions by own time. Profiled figures carry cProfile's own
overhead (about 2x): read them as shares, not as costs. ``--json`` prints the medians as JSON
(for comparing two checkouts run alternately).

Bounded: ``--requests`` per scenario per round, ``--rounds`` rounds; nothing runs in the
background apart from the in-memory node's own notifier and audit threads, stopped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

import accounts.auth  # noqa: E402
import distro.http  # noqa: E402
from accounts.auth import Authenticator, HashingPool, UserDirectory  # noqa: E402
from consistency.notifier import Notifier  # noqa: E402
from distro import signing  # noqa: E402
from distro.membership import MemberState  # noqa: E402
from distro.service import DistroCluster  # noqa: E402
from distro.signing import Verifier  # noqa: E402
from distro.store import DistroStore  # noqa: E402
from distro.transport import HttpPeerTransport  # noqa: E402
from facades.nacos_v1 import context as nacos_v1  # noqa: E402
from naming.changes import Change  # noqa: E402
from naming.codec import DATUM_CODEC  # noqa: E402
from naming.health import HealthSettings  # noqa: E402
from node.runtime import NodeConfig, NodeRuntime, NodeStatus, in_memory_runtime  # noqa: E402
from server.wsgi import application  # noqa: E402 - sets Django up

TOKEN_KEY = b"bench-token-key-0123456789abcdef"
PEER_KEY = b"bench-peer-key-0123456789abcdefgh"
LOCAL = "127.0.0.1:8848"
PEER = "127.0.0.1:8849"  # never started: the owner only needs to know it as a member
USER, PASSWORD = "bench", "bench-password-1"
USER_AGENT = "Nacos-Java-Client:v1.4.6"
NO_HEALTH = HealthSettings(sweep_enabled=False, clean_enabled=False)


# -- the nodes ----------------------------------------------------------------------------------


def with_auth(runtime: NodeRuntime) -> NodeRuntime:
    runtime.auth = Authenticator(
        TOKEN_KEY, UserDirectory(runtime.accounts), pool=HashingPool(nice=0)
    )
    accounts = runtime.accounts
    accounts.create_user(USER, PASSWORD)
    accounts.bind_role("ROLE_BENCH", USER)
    accounts.add_permission("ROLE_BENCH", ":*:*", "rw")
    return runtime


def standalone() -> NodeRuntime:
    return with_auth(in_memory_runtime(NodeConfig(port=8848, health=NO_HEALTH)))


def cluster_owner() -> NodeRuntime:
    """A member in cluster mode that owns every service (its one peer never reports, so the
    ownership map holds this member alone), built without sockets or background threads
    besides the notifier and the audit writer."""
    config = NodeConfig(port=8848, members=(LOCAL, PEER), peer_key=PEER_KEY, health=NO_HEALTH)
    notifier = Notifier()
    cluster = DistroCluster(
        LOCAL,
        config.members,
        notifier,
        HttpPeerTransport(LOCAL, PEER_KEY),
        lambda: MemberState.UP,
        codec=DATUM_CODEC,
        decode_change=Change.decode,
    )
    runtime = NodeRuntime(
        config, notifier, cluster, DistroStore(notifier, DATUM_CODEC), distro=cluster
    )
    runtime.peer_verifier = Verifier(PEER_KEY, LOCAL)
    runtime.audit.start()
    notifier.start()
    cluster.store.ready = True
    cluster.membership.refresh()
    runtime.status = NodeStatus.UP
    runtime._ready.set()
    return with_auth(runtime)


def serve(runtime: NodeRuntime) -> None:
    """Make ``runtime`` the node the edge serves (the authorization seam stays on the first
    node's accounts: both hold the same user and grants)."""
    nacos_v1.install(runtime)
    peers = None
    if runtime.cluster is not None and runtime.peer_verifier is not None:
        peers = distro.http.Peers(runtime.cluster, runtime.peer_verifier)
    distro.http.install(peers)


# -- requests -----------------------------------------------------------------------------------


def environ(
    method: str, path: str, query: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8848",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "HTTP_HOST": LOCAL,
        "HTTP_USER_AGENT": USER_AGENT,
        "HTTP_ACCEPT_ENCODING": "gzip,deflate,sdch",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": "application/x-www-form-urlencoded" if body else "",
    }
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def register_query(token: str, service: str, ip: str, port: int) -> str:
    return urlencode(
        {
            "serviceName": service,
            "ip": ip,
            "port": port,
            "weight": "1.0",
            "enable": "true",
            "healthy": "true",
            "ephemeral": "true",
            "clusterName": "DEFAULT",
            "accessToken": token,
        }
    )


def beat_query(token: str, service: str, ip: str, port: int) -> str:
    beat = json.dumps(
        {
            "cluster": "DEFAULT",
            "ip": ip,
            "metadata": {},
            "port": port,
            "scheduled": True,
            "serviceName": service,
            "weight": 1.0,
        },
        separators=(",", ":"),
    )
    return f"serviceName={service}&accessToken={token}&beat={quote(beat, safe='')}"


def address(n: int, base: int = 10) -> tuple[str, int]:
    return f"{base}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 1000 + n % 50000


class Scenario:
    def __init__(
        self, name: str, node: NodeRuntime, build: Callable[[int], Iterable[dict[str, Any]]]
    ) -> None:
        self.name = name
        self.node = node
        self.build = build  # n → n fresh environs (built before the timed loop)


def run(envs: list[dict[str, Any]]) -> tuple[float, float, list[tuple[str, bytes]]]:
    """Calls the application once per environ: (CPU seconds of the process, wall seconds, the
    first answer and any not 200). CPU time is the figure to compare: this box is shared, and
    wall time counts whatever else ran meanwhile; the process's CPU also counts the notifier
    and audit threads, should they take a delivery."""
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]]) -> None:
        status.append(line)

    odd: list[tuple[str, bytes]] = []
    cpu, wall = time.process_time(), time.perf_counter()
    for env in envs:
        body = b"".join(application(env, start_response))
        if status[-1][:3] != "200" or not odd:
            odd.append((status[-1], body))
    return time.process_time() - cpu, time.perf_counter() - wall, odd


def check(name: str, answers: list[tuple[str, bytes]]) -> None:
    for line, body in answers:
        if line[:3] != "200":
            raise SystemExit(f"{name}: {line} {body[:200]!r}")


def scenarios(main: NodeRuntime, owner: NodeRuntime, token: str) -> list[Scenario]:
    # Fixtures: a 100-instance service to list, 1,000 instances to beat, 100 to re-register.
    serve(main)
    fixtures = [
        environ("POST", "/nacos/v1/ns/instance", register_query(token, service, *address(n, base)))
        for service, base, count in (
            ("bench-list", 10, 100),
            ("bench-beat", 11, 1000),
            ("bench-upd", 12, 100),
        )
        for n in range(count)
    ]
    check("fixtures", run(fixtures)[2])

    counter = iter(range(10**9))

    def register_new(n: int) -> Iterable[dict[str, Any]]:
        for _ in range(n):
            i = next(counter)
            query = register_query(token, f"bench-reg-{i % 100}", *address(i, 20))
            yield environ("POST", "/nacos/v1/ns/instance", query)

    def register_update(n: int) -> Iterable[dict[str, Any]]:
        for i in range(n):
            query = register_query(token, "bench-upd", *address(i % 100, 12))
            yield environ("POST", "/nacos/v1/ns/instance", query)

    def beat(n: int) -> Iterable[dict[str, Any]]:
        for i in range(n):
            query = beat_query(token, "bench-beat", *address(i % 1000, 11))
            yield environ("PUT", "/nacos/v1/ns/instance/beat", query)

    def list_(n: int) -> Iterable[dict[str, Any]]:
        query = f"serviceName=bench-list&healthyOnly=false&clusters=&accessToken={token}"
        for _ in range(n):
            yield environ("GET", "/nacos/v1/ns/instance/list", query)

    forwarded = iter(range(10**9))

    def forward_owner(n: int) -> Iterable[dict[str, Any]]:
        # What forward.py sends: the client's path, query and body, a few of its headers,
        # the actor, and the peer signature (a fresh nonce per request).
        actor = urlencode({"user": USER, "address": "10.9.9.9"})
        for _ in range(n):
            i = next(forwarded)
            path = "/nacos/v1/ns/instance"
            query = register_query(token, f"bench-fwd-{i % 100}", *address(i, 30))
            headers = signing.sign(
                PEER_KEY, "POST", f"{path}?{query}", b"", PEER, LOCAL, actor=actor
            )
            headers["User-Agent"] = USER_AGENT
            yield environ("POST", path, query, headers=headers)

    return [
        Scenario("beat", main, beat),
        Scenario("register-new", main, register_new),
        Scenario("register-update", main, register_update),
        Scenario("list", main, list_),
        Scenario("forward-owner", owner, forward_owner),
    ]


# -- profiling ----------------------------------------------------------------------------------

# (file suffix, function) → stage label; a request's time in each, per request, cumulative.
STAGES: list[tuple[str, str, str]] = [
    ("server/wsgi.py", "application", "whole request (wsgi.application)"),
    ("django/core/handlers/wsgi.py", "__init__", "  WSGIRequest(environ)"),
    ("facades/nacos_v1/api.py", "gate", "  gate (status, limitedUrlMap)"),
    ("facades/nacos_v1/api.py", "params_of", "  params: parse query/form"),
    ("facades/nacos_v1/api.py", "authenticate", "  authenticate (token)"),
    ("accounts/auth.py", "_check_token", "    Authenticator._check_token"),
    ("facades/nacos_v1/api.py", "naming_resource", "  authorize: resource"),
    ("facades/nacos_v1/api.py", "beat_resource", "  authorize: beat resource"),
    ("accounts/auth.py", "authorize", "  authorize: decision"),
    ("distro/http.py", "verify_peer", "  verify_peer (signed forward)"),
    ("facades/nacos_v1/forward.py", "forward_if_not_owner", "  forward_if_not_owner"),
    ("facades/nacos_v1/actor.py", "acting_for", "  acting_for (audit actor)"),
    ("facades/nacos_v1/params.py", "register_instance", "  params: register command"),
    ("facades/nacos_v1/params.py", "beat", "  params: beat command"),
    ("facades/nacos_v1/params.py", "list_instances", "  params: list query"),
    ("facades/nacos_v1/clients.py", "client_of", "  client_of (User-Agent)"),
    ("naming/operations.py", "register_instance", "  operation: register_instance"),
    ("naming/operations.py", "beat", "  operation: beat"),
    ("naming/health.py", "touch", "    BeatTable.touch"),
    ("consistency/service.py", "submit", "    consistency submit"),
    ("distro/store.py", "submit", "      store apply (DistroStore.submit)"),
    ("naming/changes.py", "apply", "        change.apply"),
    ("distro/sync.py", "mark", "      sync mark (peers)"),
    ("naming/audit.py", "on_write", "      audit observer"),
    ("consistency/notifier.py", "wait_processed", "      notifier wait/deliver"),
    ("naming/registry.py", "rebuild", "        registry rebuild"),
    ("facades/nacos_v1/push.py", "on_service_changed", "        push listener"),
    ("naming/registry.py", "find", "  registry find"),
    ("facades/nacos_v1/render.py", "render_instance_list", "  render list"),
    ("facades/nacos_v1/api.py", "to_response", "  to_response (HttpResponse)"),
    ("lib/counters.py", "observe", "  latency histogram"),
]


def profile(scenario: Scenario, n: int, top: int) -> None:
    serve(scenario.node)
    envs = list(scenario.build(n))
    profiler = cProfile.Profile()
    profiler.enable()
    _, _, answers = run(envs)
    profiler.disable()
    check(scenario.name, answers)
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, str], float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items():
        for suffix, name, _label in STAGES:
            if func == name and filename.endswith(suffix):
                table[(suffix, name)] = table.get((suffix, name), 0.0) + ct
    print(f"\n## {scenario.name}: per request under cProfile (n={n})")
    for suffix, name, label in STAGES:
        if (suffix, name) in table:
            print(f"  {label:<44} {table[(suffix, name)] / n * 1e6:8.1f} µs")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("  top by own time:")
    for line in lines[start : start + top + 1]:
        print("   ", line.replace(str(ROOT) + "/", "")[:150])


# -- stages, each timed alone -------------------------------------------------------------------


def timed(calls: list[Callable[[], object]], repeats: int) -> float:
    """µs of process CPU per call: the fastest of ``repeats`` passes over ``calls`` split in
    equal parts (the fastest pass is the one the rest of this shared box disturbed least)."""
    size = len(calls) // repeats
    best = float("inf")
    for n in range(repeats):
        part = calls[n * size : (n + 1) * size]
        started = time.process_time()
        for call in part:
            call()
        best = min(best, (time.process_time() - started) / size)
    return best * 1e6


def enter_exit(scope: Any) -> None:
    with scope:
        pass


def stages(
    main: NodeRuntime,
    owner: NodeRuntime,
    token: str,
    forward: Callable[[int], Iterable[dict[str, Any]]],
    n: int,
) -> None:
    """Each stage of a request alone, with the objects the stage before it produced: what a
    beat, a register, a list and a signed forward cost, part by part, without a profiler."""
    from django.core.handlers.wsgi import WSGIRequest

    from accounts.auth import Action, authorize
    from consistency.datum import DatumKey
    from distro.http import verify_peer
    from facades.nacos_v1 import params as p
    from facades.nacos_v1 import render
    from facades.nacos_v1.actor import acting_for
    from facades.nacos_v1.api import (
        Raw,
        authenticate,
        beat_resource,
        gate,
        namespace_resource,
        naming_resource,
        params_of,
        to_response,
    )
    from facades.nacos_v1.clients import client_of
    from facades.nacos_v1.handlers import _beat_answer
    from naming.changes import UpsertInstance

    repeats = 5
    total = n * repeats
    serve(main)
    ops = main.operations
    registry = main.registry
    rows: list[tuple[str, str, float]] = []

    def row(scenario: str, stage: str, calls: list[Callable[[], object]]) -> None:
        rows.append((scenario, stage, timed(calls, repeats)))

    def requests_of(envs: Iterable[dict[str, Any]]) -> list[Any]:
        return [WSGIRequest(env) for env in envs]

    def common(scenario: str, envs: list[dict[str, Any]], resource: Callable[..., Any]) -> Any:
        row(scenario, "WSGIRequest(environ) [server]", [lambda e=e: WSGIRequest(e) for e in envs])
        reqs = requests_of(envs)  # bodies are empty: an environ serves again
        row(scenario, "gate", [lambda r=r: gate(main, r) for r in reqs])
        row(scenario, "params: parse query", [lambda r=r: params_of(r) for r in reqs])
        params = [params_of(r) for r in reqs]
        row(
            scenario,
            "authenticate (cached token)",
            [lambda r=r, q=q: authenticate(main, r, q) for r, q in zip(reqs, params, strict=True)],
        )
        caller = authenticate(main, reqs[0], params[0])
        wanted = Action.READ if reqs[0].method == "GET" else Action.WRITE
        row(
            scenario,
            "authorize (resource + decision)",
            [lambda q=q: authorize(caller, wanted, resource(q)) for q in params],
        )
        row(
            scenario,
            "audit actor scope",
            [lambda r=r: enter_exit(acting_for(r, caller)) for r in reqs],
        )
        return reqs, params

    # beat
    beat_envs = [
        environ(
            "PUT",
            "/nacos/v1/ns/instance/beat",
            beat_query(token, "bench-beat", *address(i % 1000, 11)),
        )
        for i in range(total)
    ]
    reqs, params = common("beat", beat_envs, beat_resource)
    row("beat", "params: beat command", [lambda q=q: p.beat(q) for q in params])
    beats = [p.beat(q) for q in params]
    row("beat", "operation: beat", [lambda b=b: ops.beat(b) for b in beats])
    row("beat", "render answer", [lambda: to_response(_beat_answer(5000, True, True))] * total)

    # register, new instances and updates
    for scenario, make in (
        ("register-new", lambda i: register_query(token, f"stage-reg-{i % 100}", *address(i, 40))),
        ("register-update", lambda i: register_query(token, "bench-upd", *address(i % 100, 12))),
    ):
        envs = [environ("POST", "/nacos/v1/ns/instance", make(i)) for i in range(total)]
        reqs, params = common(scenario, envs, naming_resource)
        row(
            scenario,
            "params: register command",
            [lambda q=q: p.register_instance(q, True) for q in params],
        )
        cmds = [p.register_instance(q, True) for q in params]
        if scenario == "register-new":  # again, on other instances: each must be new
            envs = [
                environ(
                    "POST",
                    "/nacos/v1/ns/instance",
                    register_query(token, f"stage-reg2-{i % 100}", *address(i, 41)),
                )
                for i in range(total)
            ]
            cmds = [p.register_instance(params_of(WSGIRequest(e)), True) for e in envs]
        row(
            scenario,
            "operation: register_instance (all below)",
            [lambda c=c: ops.register_instance(c) for c in cmds],
        )
        name = cmds[0].service
        view = registry.get(name)
        assert view is not None
        row(scenario, "  registry rebuild alone", [lambda n=name: registry.rebuild(n)] * total)
        key = DatumKey.instances(name, True)
        change = UpsertInstance(cmds[0].instance, name.grouped, 0)
        after = main.consistency.get(key)
        assert after is not None
        row(
            scenario,
            "  audit observer alone",
            [lambda k=key, c=change, a=after: main.audit.on_write(k, c, a, a)] * total,
        )
        row(scenario, "render answer", [lambda: to_response("ok")] * total)

    # list
    list_query = f"serviceName=bench-list&healthyOnly=false&clusters=&accessToken={token}"
    envs = [environ("GET", "/nacos/v1/ns/instance/list", list_query) for _ in range(total)]
    reqs, params = common("list", envs, namespace_resource)
    row("list", "client_of (User-Agent)", [lambda r=r: client_of(r) for r in reqs])
    row(
        "list",
        "params: list query",
        [
            lambda q=q, r=r: p.list_instances(q, client_of(r))
            for q, r in zip(params, reqs, strict=True)
        ],
    )
    query = p.list_instances(params[0], client_of(reqs[0]))
    view = ops.find_service(query.service)
    row(
        "list",
        "render list (cached hosts)",
        [
            lambda: to_response(
                Raw(
                    render.render_instance_list(
                        view, query.service.grouped, "", (), False, True, "", 10000, ops.wall_ms()
                    )
                )
            )
        ]
        * total,
    )

    # the owner's side of a forward: the signature check
    serve(owner)
    fenvs = list(forward(total))
    freqs = requests_of(fenvs)
    row("forward-owner", "verify_peer (HMAC, nonce)", [lambda r=r: verify_peer(r) for r in freqs])
    serve(main)

    print(f"\nstages alone, µs of CPU per call (fastest of {repeats} passes of {n}):")
    last = ""
    for scenario, stage, us in rows:
        print(f"  {scenario if scenario != last else '':<16} {stage:<42} {us:7.1f}")
        last = scenario


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also a cProfile per scenario")
    parser.add_argument("--stages", action="store_true", help="also each stage timed alone")
    parser.add_argument("--top", type=int, default=20, help="functions listed per profile")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON only")
    parser.add_argument(
        "--gc",
        choices=("on", "off", "freeze"),
        default="on",
        help="the cyclic collector during the rounds: on (as served), off, or on with the "
        "objects built at start frozen out of it (gc.freeze)",
    )
    args = parser.parse_args()

    main_node, owner = standalone(), cluster_owner()
    assert main_node.auth is not None
    accounts.auth.install(main_node.auth, main_node.accounts)
    # Both nodes sign tokens with the same key and hold the same user: one token serves both.
    token, _ = main_node.auth.login(USER, PASSWORD)
    all_scenarios = scenarios(main_node, owner, token)
    wanted = set(filter(None, args.only.split(",")))
    chosen = [s for s in all_scenarios if not wanted or s.name in wanted]
    try:
        for scenario in chosen:  # warm-up: caches, first-time imports
            serve(scenario.node)
            check(scenario.name, run(list(scenario.build(200)))[2])
        if args.gc == "off":
            gc.disable()
        elif args.gc == "freeze":
            gc.collect()
            gc.freeze()
        cpu: dict[str, list[float]] = {s.name: [] for s in chosen}
        wall: dict[str, list[float]] = {s.name: [] for s in chosen}
        for _ in range(args.rounds):
            for scenario in chosen:
                serve(scenario.node)
                envs = list(scenario.build(args.requests))
                cpu_s, wall_s, answers = run(envs)
                check(scenario.name, answers)
                cpu[scenario.name].append(cpu_s / args.requests * 1e6)
                wall[scenario.name].append(wall_s / args.requests * 1e6)
        medians = {name: round(statistics.median(v), 1) for name, v in cpu.items()}
        if args.json:
            print(json.dumps(medians))
        else:
            print(
                f"median of {args.rounds} rounds, {args.requests} requests each, "
                "µs of process CPU per request (wall in brackets):"
            )
            for name, values in cpu.items():
                spread = ", ".join(f"{v:.0f}" for v in values)
                print(
                    f"  {name:<16} {medians[name]:7.1f}   "
                    f"[{statistics.median(wall[name]):7.1f}]   (rounds: {spread})"
                )
        if args.profile:
            for scenario in chosen:
                profile(scenario, args.requests, args.top)
        if args.stages:
            forward = next(s for s in all_scenarios if s.name == "forward-owner").build
            stages(main_node, owner, token, forward, args.requests)
    finally:
        for node in (main_node, owner):
            if node.auth is not None:
                node.auth.close()
            node.stop()


if __name__ == "__main__":
    main()
