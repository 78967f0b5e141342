"""``manage.py runnode``: one node, one process, all live state in it.

Order matters: the pysyncobj node is created on this (main) thread because its tick thread dies
with the thread that created it; the HTTP port is bound right away so that a starting node
answers 503 / ``STARTING`` rather than refusing connections; a start-up thread waits for the Raft
journal to be replayed into the registry and then opens the gate. SIGTERM and SIGINT stop the
HTTP server (listener first, then a short drain, then every connection), then the timers, then
Raft, then the notifier.

Everything the node writes is private: the process umask is 0o077 before the database, the
Raft journal and dump or any secret is created, and a data dir left readable by an older
version is tightened at start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.auth import Authenticator, HashingPool, LoginLimits, UserDirectory
from distro.sync import SyncSettings
from facades.nacos_v2.server import GrpcEdge, GrpcSettings
from lib.errors import ErrorCode, NamingError
from lib.files import make_private_dir
from lib.keys import node_keys
from lib.limits import raise_fd_limit
from naming.audit import acting
from naming.health import HealthSettings
from node import runtime as node_runtime
from node.runtime import NodeConfig
from server.config import NamingSettings
from server.serving import make_server

log = logging.getLogger("naming.node")


NONVOTER_SUFFIX = "/nonvoter"


@dataclass(frozen=True, slots=True)
class MemberList:
    """``--members`` parsed: every member's HTTP address, its raft port, and which do not vote."""

    addresses: tuple[str, ...] = ()
    raft_ports: dict[str, int] = field(default_factory=dict)
    nonvoters: frozenset[str] = frozenset()

    @property
    def voters(self) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if a not in self.nonvoters)


def parse_members(raw: str) -> MemberList:
    """``host:port[:raft_port][/nonvoter]`` items; the raft port defaults to port - 1000 (as in
    Nacos). Unmarked members vote in Raft; ``/nonvoter`` ones replicate the log as pysyncobj
    read-only nodes (they serve reads and forward writes, and never count towards a quorum).
    """
    members: list[str] = []
    raft_ports: dict[str, int] = {}
    nonvoters: set[str] = set()
    for item in filter(None, (m.strip() for m in raw.split(","))):
        spec, slash, suffix = item.partition("/")
        if slash and "/" + suffix != NONVOTER_SUFFIX:
            raise CommandError(
                f"bad member suffix in {item!r}: only {NONVOTER_SUFFIX!r} is known "
                "(host:port[:raft_port][/nonvoter])"
            )
        parts = spec.split(":")
        if len(parts) == 1:
            parts.append("8848")
        if len(parts) not in (2, 3) or not parts[0] or not all(p.isdigit() for p in parts[1:]):
            raise CommandError(
                f"bad member address: {item!r} (want host:port[:raft_port][/nonvoter])"
            )
        port = int(parts[1])
        raft = int(parts[2]) if len(parts) == 3 else port - 1000
        if not 1 <= port <= 65535 or not 1 <= raft <= 65535:
            raise CommandError(f"bad member address: {item!r} (ports are 1-65535)")
        address = f"{parts[0]}:{port}"
        if address in raft_ports:
            raise CommandError(f"member {address} is listed twice in --members")
        members.append(address)
        raft_ports[address] = raft
        if slash:
            nonvoters.add(address)
    parsed = MemberList(tuple(members), raft_ports, frozenset(nonvoters))
    voters = len(parsed.voters)
    if members and not voters:
        raise CommandError("--members names no Raft voter: leave at least one without /nonvoter")
    if voters and voters % 2 == 0:
        # Legal, but an even count tolerates no more failures than one voter fewer.
        log.warning(
            "%d Raft voters: a quorum is %d, so this survives as many failures as %d voters; "
            "an odd count (3 or 5) is the usual choice",
            voters,
            voters // 2 + 1,
            voters - 1,
        )
    return parsed


def naming_settings() -> NamingSettings:
    """The validated settings object ``server/settings.py`` built once (``server.config``)."""
    naming = settings.NAMING
    if not isinstance(naming, NamingSettings):  # Django settings are untyped: say what we hold
        raise CommandError("settings.NAMING must be a server.config.NamingSettings")
    return naming


# The Nacos 2.x SDKs reach gRPC on the HTTP port + 1000 (nacos-v2-grpc.md §1).
GRPC_PORT_OFFSET = 1000


class Command(BaseCommand):
    help = "Run one naming node (HTTP API + Distro + Raft) in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8848)
        parser.add_argument("--data-dir", default=None)
        parser.add_argument(
            "--members",
            default="",
            help="host:port[:raft_port][/nonvoter],... every member (this one too); /nonvoter "
            "members replicate Raft without a vote",
        )
        parser.add_argument("--raft-port", type=int, default=None)
        parser.add_argument("--threads", type=int, default=None)
        # The Nacos 2.x gRPC port (default: NAMING_GRPC_PORT, or the HTTP port + 1000 as the
        # SDKs compute it; -1 turns the gRPC edge off).
        parser.add_argument("--grpc-port", type=int, default=None)

    def handle(self, *args: Any, **opts: Any) -> None:
        # Before anything is created: SQLite and pysyncobj create files with the process umask.
        os.umask(0o077)
        naming = naming_settings()
        data_dir = Path(opts["data_dir"] or naming.data_dir).resolve()
        make_private_dir(data_dir)
        tighten_data_dir(data_dir, Path(settings.DATABASES["default"]["NAME"]))
        # CPython's default is 5 ms; the setting lets an operator trade event-loop latency
        # against worker throughput (the loop thread competes with the workers for the GIL).
        sys.setswitchinterval(naming.switch_interval_ms / 1000.0)
        port = int(opts["port"])
        if not 1 <= port <= 65535:
            raise CommandError("--port must be 1-65535")
        raft_port = opts["raft_port"] or port - 1000
        if not 1 <= raft_port <= 65535:
            raise CommandError("--raft-port must be 1-65535 (default: port - 1000)")
        parsed = parse_members(opts["members"])
        members, raft_ports = parsed.addresses, parsed.raft_ports
        me = f"{opts['host']}:{port}"
        if members and me not in members:
            raise CommandError(f"this node ({me}) is not in --members")
        cluster = len(members) > 1
        if cluster:
            if not naming.cluster_secret:
                raise CommandError(
                    "cluster mode needs NAMING_CLUSTER_SECRET (the same on every node)"
                )
            listed = raft_ports[me]
            if opts["raft_port"] and opts["raft_port"] != listed:
                raise CommandError(
                    f"--raft-port {opts['raft_port']} disagrees with --members ({listed}); "
                    "peers learn raft ports from the member list (host:port:raft_port)"
                )
            raft_port = listed

        lock = self._lock_data_dir(data_dir)
        call_command("migrate", verbosity=0, interactive=False)
        keys = node_keys(naming.cluster_secret, data_dir, clustered=cluster)
        config = NodeConfig(
            host=opts["host"],
            port=port,
            raft_port=raft_port,
            data_dir=data_dir,
            members=members,
            member_raft_ports=raft_ports,
            nonvoters=parsed.nonvoters,
            raft_password=keys.raft_password,
            raft_fsync=naming.raft_fsync,
            peer_key=keys.peer_key,
            redis_url=naming.redis_url,
            report_interval_s=naming.member_report_interval_s,
            audit_max_entries=naming.audit_max_entries,
            audit_max_age_h=naming.audit_max_age_h,
            lease_grace_s=naming.lease_grace_s,
            feed_retention_s=naming.feed_retention_s,
            feed_max_events=naming.feed_max_events,
            distro=SyncSettings(
                batch_window_s=naming.distro_batch_window_ms / 1000.0,
                verify_interval_s=naming.distro_verify_interval_s,
                drop_syncs=naming.fault_drop_sync,
                sync_ack=naming.distro_sync_ack,
            ),
            health=HealthSettings(
                sweep_enabled=naming.sweep_enabled,
                sweep_interval_s=naming.sweep_interval_s,
                clean_enabled=naming.clean_enabled,
                clean_initial_s=naming.clean_initial_s,
                clean_period_s=naming.clean_period_s,
                check_interval_s=naming.check_interval_s,
                check_networks=naming.check_networks,
            ),
        )
        runtime = node_runtime.raft_runtime(config)
        if naming.auth_enabled:
            # A cluster's key is derived (every member accepts a token any member issued:
            # clients fail over); a standalone node's is generated once in its data dir.
            runtime.auth = Authenticator(
                keys.token_key,
                UserDirectory(runtime.accounts),
                naming.token_ttl_s,
                limits=LoginLimits(
                    max_failures=naming.login_max_failures,
                    max_address_failures=naming.login_max_address_failures,
                    window_s=naming.login_failure_window_s,
                    lockout_s=naming.login_lockout_s,
                ),
                pool=HashingPool(
                    naming.login_hash_workers,
                    naming.login_hash_queue,
                    naming.login_hash_nice,
                ),
            )
        if naming.auth_enabled and naming.admin_bootstrap:
            runtime.before_up.append(lambda: self._bootstrap_admin(runtime, naming.admin_password))
        node_runtime.install(runtime)

        # Every idle client holds a descriptor; the usual soft limit of 1,024 is far too low.
        before, fd_limit = raise_fd_limit()
        if fd_limit != before:
            log.info("descriptor limit raised from %d to %d", before, fd_limit)
        server = make_server(
            config.host,
            config.port,
            opts["threads"] or naming.server_threads,
            connection_limit=naming.http_connection_limit,
            drain_s=naming.http_drain_s,
            fd_limit=fd_limit,
            feed=runtime.feed,
            events_keepalive_s=naming.events_keepalive_s,
            events_max_streams=naming.events_max_streams,
        )
        log.info(
            "HTTP connection limit %d (descriptor limit %d), %d worker threads",
            server.connection_limit,
            fd_limit,
            server.stats.threads,
        )

        grpc_port = opts["grpc_port"] if opts["grpc_port"] is not None else naming.grpc_port
        if grpc_port == 0:
            grpc_port = port + GRPC_PORT_OFFSET
        if grpc_port > 0:
            edge = GrpcEdge(
                runtime,
                config.host,
                grpc_port,
                GrpcSettings(
                    max_connections=naming.grpc_max_connections,
                    max_per_client=naming.grpc_max_per_client,
                    max_message_bytes=naming.grpc_max_message_bytes,
                    idle_probe_s=naming.grpc_idle_probe_s,
                    probe_timeout_s=naming.grpc_probe_timeout_s,
                    push_merge_ms=naming.grpc_push_merge_ms,
                    push_timeout_s=naming.grpc_push_timeout_s,
                    push_retries=naming.grpc_push_retries,
                ),
            )
            runtime.attach_grpc(edge)
            try:
                edge.start()  # answers INVALID_SERVER_STATUS until the node is UP
            except RuntimeError as exc:
                server.close()
                raise CommandError(str(exc)) from None

        def starter() -> None:
            try:
                runtime.finish_start()
            except Exception:
                log.exception("node failed to start; stopping")
                signal.raise_signal(signal.SIGTERM)

        def on_signal(signum: int, _frame: Any) -> None:
            # Only until the server's loop runs: from then on its own handlers drain first.
            log.info("signal %s: shutting down", signum)
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        threading.Thread(target=starter, name="node-start", daemon=True).start()
        self.stdout.write(
            f"naming node listening on http://{config.address}/nacos (raft {raft_port})"
        )
        self.stdout.flush()
        try:
            server.run()  # returns once a signal stopped it and its connections are closed
        except SystemExit:
            pass
        finally:
            # The loop put back the default handlers when it closed: a second signal now would
            # kill the process in the middle of closing the Raft journal.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            server.close()
            if runtime.grpc is not None:
                runtime.grpc.stop()
            runtime.stop()
            if runtime.auth is not None:
                runtime.auth.close()
            node_runtime.install(None)
            lock.close()
            log.info("node stopped")
            sys.stdout.flush()
        exit_now()

    def _bootstrap_admin(self, runtime: node_runtime.NodeRuntime, password: str) -> None:
        """The first admin, once the replicated accounts are loaded: a restarted member or a
        second member of a cluster finds it there and creates nothing."""
        for attempt in range(30):
            try:
                with acting(reason="bootstrap admin"):
                    generated = runtime.accounts.ensure_admin(
                        password, lambda: secrets.token_urlsafe(12)
                    )
                break
            except NamingError as exc:
                if exc.code is not ErrorCode.UNAVAILABLE:
                    raise
                # A leader election in progress: try again shortly.
                log.info("bootstrap admin not written yet (%s), retrying", exc.message)
                time.sleep(min(0.2 * (attempt + 1), 2.0))
        else:
            log.error("could not create the bootstrap admin: no raft leader accepted it")
            return
        if generated:
            self.stdout.write(f"Initial admin user created: nacos / {generated}  (shown once)")
            self.stdout.flush()

    def _lock_data_dir(self, data_dir: Path) -> Any:
        handle = open(data_dir / "node.lock", "w")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CommandError(f"another node is running on data dir {data_dir}") from None
        return handle


def exit_now() -> None:
    """End the process after an orderly stop, without the interpreter's teardown.

    Everything is closed by now (connections, Raft journal and dump, the lock). Teardown then
    garbage-collects the whole heap with every module still loaded: measured 1-3 s on a loaded
    2-core box, during which the node had logged "node stopped" yet was still running.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def tighten_data_dir(data_dir: Path, db_path: Path) -> None:
    """Make a data dir written by an older version (0755 dir, 0644 files) owner-only."""
    _tighten(data_dir, 0o700)
    for path in data_dir.rglob("*"):
        if path.is_symlink():
            continue  # never follow a link out of the data dir
        _tighten(path, 0o700 if path.is_dir() else 0o600)
    # NAMING_DB_PATH may put the database elsewhere: that file and SQLite's side files only.
    for suffix in ("", "-journal", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        if path.is_file() and not path.is_symlink():
            _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.lstat().st_mode)
        if current & 0o077:
            path.chmod(current & mode)
            log.info("tightened %s from %o to %o", path, current, current & mode)
    except OSError as exc:  # not ours, or gone: say so, the node can still run
        log.warning("could not tighten the mode of %s: %s", path, exc)
