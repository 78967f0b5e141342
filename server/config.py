"""The node's settings: one typed, validated object built once from the environment.

``server/settings.py`` builds :data:`NamingSettings` once (``settings.NAMING``) and ``runnode``
reads typed attributes from it; nothing else reads a ``NAMING_*`` variable. The rules, in the
spirit of DRF's ``rest_framework/settings.py`` (one namespaced object) and hashicorp/raft's
``config.go`` (the config validates itself, cross-field rules included, by raising):

- every field names its environment variable (``NAMING_<...>``) in its metadata; an empty
  variable means "the default", as a fresh checkout has none set;
- a ``NAMING_*`` variable that is no field is an error (a typo like ``NAMING_SWEEP_INTERVAL``
  would otherwise be ignored silently and the operator would run on the default), with the
  closest known name;
- a value of the wrong type or out of range is an error, and so is a combination that cannot
  work (:meth:`NamingSettings.problems`);
- problems are reported together, each naming its variable, in one :class:`SettingError`:
  first every unknown variable and unparsable value, then (once all parse) every range and
  cross-field problem.

``__post_init__`` runs the range and cross-field checks, so a settings object built in code (a
test) is held to the same rules as one read from the environment.

A new edge adds a field here (and a row in the README's table), never a string lookup.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from naming.domain import DEFAULT_HEARTBEAT_TIMEOUT_MS

PREFIX = "NAMING_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingError(ValueError):
    """One or more settings cannot be used; the message names every variable at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _env(
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """A field's metadata: its environment variable and its allowed range (inclusive)."""
    return {"env": name, "min": minimum, "max": maximum}


@dataclass(frozen=True, slots=True)
class NamingSettings:
    # Resolved against the working directory at start, as ``manage.py`` is run from the checkout.
    data_dir: Path = field(
        default_factory=lambda: Path("data").resolve(), metadata=_env("NAMING_DATA_DIR")
    )
    # None: ``data_dir / naming.sqlite3`` (see :attr:`database_path`).
    db_path: Path | None = field(default=None, metadata=_env("NAMING_DB_PATH"))
    log_level: str = field(default="INFO", metadata=_env("NAMING_LOG_LEVEL"))

    auth_enabled: bool = field(default=True, metadata=_env("NAMING_AUTH_ENABLED"))
    token_ttl_s: int = field(default=18000, metadata=_env("NAMING_TOKEN_TTL_S", minimum=60))
    # repr=False: a logged or printed settings object must not carry a secret.
    admin_password: str = field(default="", repr=False, metadata=_env("NAMING_ADMIN_PASSWORD"))
    # Off: no admin is created at start; the first POST /nacos/v1/auth/users/admin (open while
    # nobody holds ROLE_ADMIN) creates it, as Nacos 2.4+ does.
    admin_bootstrap: bool = field(default=True, metadata=_env("NAMING_ADMIN_BOOTSTRAP"))
    # Password checks (PBKDF2, ~0.25 s each) run on this many threads with at most QUEUE
    # waiting; more concurrent attempts are refused with a 503 (issue #8).
    login_hash_workers: int = field(
        default=1, metadata=_env("NAMING_LOGIN_HASH_WORKERS", minimum=1, maximum=16)
    )
    login_hash_queue: int = field(
        default=3, metadata=_env("NAMING_LOGIN_HASH_QUEUE", minimum=0, maximum=256)
    )
    login_hash_nice: int = field(
        default=5, metadata=_env("NAMING_LOGIN_HASH_NICE", minimum=0, maximum=19)
    )
    login_max_failures: int = field(
        default=5, metadata=_env("NAMING_LOGIN_MAX_FAILURES", minimum=1)
    )
    login_max_address_failures: int = field(
        default=20, metadata=_env("NAMING_LOGIN_MAX_ADDRESS_FAILURES", minimum=1)
    )
    login_failure_window_s: float = field(
        default=60.0, metadata=_env("NAMING_LOGIN_FAILURE_WINDOW_S", minimum=1.0)
    )
    login_lockout_s: float = field(
        default=60.0, metadata=_env("NAMING_LOGIN_LOCKOUT_S", minimum=1.0)
    )

    server_threads: int = field(
        default=32, metadata=_env("NAMING_SERVER_THREADS", minimum=1, maximum=256)
    )
    # Open HTTP connections held at once (lowered to fit the descriptor limit); past it the
    # longest-idle ones are closed to admit new callers.
    http_connection_limit: int = field(
        default=10000, metadata=_env("NAMING_HTTP_CONNECTION_LIMIT", minimum=16)
    )
    # On SIGTERM, requests in progress get this long to finish (idle connections close at once).
    http_drain_s: float = field(
        default=2.0, metadata=_env("NAMING_HTTP_DRAIN_S", minimum=0.0, maximum=300.0)
    )
    # The Nacos 2.x gRPC edge (facades/nacos_v2): its port (0: the HTTP port + 1000, what the
    # SDKs compute; -1: no gRPC edge), connection limits and timings (nacos-v2-grpc.md §2).
    grpc_port: int = field(default=0, metadata=_env("NAMING_GRPC_PORT", minimum=-1, maximum=65535))
    grpc_max_connections: int = field(
        default=20_000, metadata=_env("NAMING_GRPC_MAX_CONNECTIONS", minimum=1)
    )
    # Connections from one client address (0: no limit; Nacos's countLimitPerClientIp).
    grpc_max_per_client: int = field(
        default=0, metadata=_env("NAMING_GRPC_MAX_PER_CLIENT", minimum=0)
    )
    grpc_max_message_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_env("NAMING_GRPC_MAX_MESSAGE_BYTES", minimum=4096, maximum=256 * 1024 * 1024),
    )
    # A connection silent this long is probed with a ClientDetectionRequest, and dropped when
    # the probe is not answered in time (Nacos: 20 s and 5 s, checked every 3 s).
    grpc_idle_probe_s: float = field(
        default=20.0, metadata=_env("NAMING_GRPC_IDLE_PROBE_S", minimum=0.1)
    )
    grpc_probe_timeout_s: float = field(
        default=5.0, metadata=_env("NAMING_GRPC_PROBE_TIMEOUT_S", minimum=0.1)
    )
    # Changes to one service within this window go out as one push (Nacos merges 500 ms; a
    # short window keeps the change-to-callback latency low).
    grpc_push_merge_ms: float = field(
        default=20.0, metadata=_env("NAMING_GRPC_PUSH_MERGE_MS", minimum=0.0, maximum=5000.0)
    )
    grpc_push_timeout_s: float = field(
        default=5.0, metadata=_env("NAMING_GRPC_PUSH_TIMEOUT_S", minimum=0.1)
    )
    grpc_push_retries: int = field(
        default=3, metadata=_env("NAMING_GRPC_PUSH_RETRIES", minimum=0, maximum=100)
    )
    # The GIL switch interval (ms), applied by runnode with sys.setswitchinterval: the event-loop
    # thread competes with the workers. 5 ms is CPython's own default.
    switch_interval_ms: float = field(
        default=5.0, metadata=_env("NAMING_SWITCH_INTERVAL_MS", minimum=0.1, maximum=100.0)
    )

    # Off only for benchmarks that register without beating: nothing ever expires.
    sweep_enabled: bool = field(default=True, metadata=_env("NAMING_SWEEP_ENABLED"))
    # The beat-expiry tick: an instance is marked or removed at most this long (plus the tick's
    # own time) after its deadline. A tick with nothing due costs a few microseconds.
    sweep_interval_s: float = field(
        default=0.25, metadata=_env("NAMING_SWEEP_INTERVAL_S", minimum=0.05)
    )
    clean_enabled: bool = field(default=True, metadata=_env("NAMING_EMPTY_SERVICE_CLEAN"))
    clean_initial_s: float = field(
        default=50.0, metadata=_env("NAMING_EMPTY_SERVICE_CLEAN_INITIAL_S", minimum=0.0)
    )
    clean_period_s: float = field(
        default=30.0, metadata=_env("NAMING_EMPTY_SERVICE_CLEAN_PERIOD_S", minimum=0.05)
    )
    check_interval_s: float = field(
        default=5.0, metadata=_env("NAMING_HEALTH_CHECK_INTERVAL_S", minimum=0.05)
    )
    check_networks: tuple[str, ...] = field(
        default=("0.0.0.0/0", "::/0"), metadata=_env("NAMING_HEALTH_CHECK_NETWORKS")
    )

    cluster_secret: str = field(default="", repr=False, metadata=_env("NAMING_CLUSTER_SECRET"))
    # Sync the Raft journal before acknowledging (off only to measure what durability costs).
    raft_fsync: bool = field(default=True, metadata=_env("NAMING_RAFT_FSYNC"))
    # Distro sync goes through Celery tasks on this Redis when set; in-process otherwise.
    redis_url: str = field(default="", metadata=_env("NAMING_REDIS_URL"))
    member_report_interval_s: float = field(
        default=2.0, metadata=_env("NAMING_MEMBER_REPORT_INTERVAL_S", minimum=0.05)
    )
    distro_verify_interval_s: float = field(
        default=5.0, metadata=_env("NAMING_DISTRO_VERIFY_INTERVAL_S", minimum=0.05)
    )
    distro_batch_window_ms: float = field(
        default=5.0, metadata=_env("NAMING_DISTRO_BATCH_WINDOW_MS", minimum=0.0)
    )
    # Answer an ephemeral write only once the key's next owner holds it (issue #8).
    distro_sync_ack: bool = field(default=False, metadata=_env("NAMING_DISTRO_SYNC_ACK"))
    # Fault injection for tests only: every Distro sync is lost, so only verify replicates.
    fault_drop_sync: bool = field(default=False, metadata=_env("NAMING_FAULT_DROP_SYNC"))

    # Connection-bound instances (Nacos 2.x clients, naming.leases): how long one may stay
    # orphaned (its holder member down, or its connection gone after a restart) before it is
    # removed; the time its client has to reconnect to a member and re-register.
    lease_grace_s: float = field(default=180.0, metadata=_env("NAMING_LEASE_GRACE_S"))

    # The change feed (naming.feed): how long events are kept for held fetches, event streams
    # and resumes, and the most kept at once (whichever bound is reached first).
    feed_retention_s: float = field(
        default=180.0, metadata=_env("NAMING_FEED_RETENTION_S", minimum=10.0, maximum=86_400.0)
    )
    feed_max_events: int = field(
        default=100_000, metadata=_env("NAMING_FEED_MAX_EVENTS", minimum=1_000, maximum=10_000_000)
    )

    # Event streams (GET /nacos/v1/ns/events, server/watching.py): the keep-alive comment on an
    # idle stream, and the most streams open at once (503 beyond).
    events_keepalive_s: float = field(
        default=15.0, metadata=_env("NAMING_EVENTS_KEEPALIVE_S", minimum=0.1, maximum=3_600.0)
    )
    events_max_streams: int = field(
        default=10_000, metadata=_env("NAMING_EVENTS_MAX_STREAMS", minimum=1, maximum=1_000_000)
    )

    # The audit trail's retention (naming.audit): whichever bound is reached first.
    audit_max_entries: int = field(
        default=100_000, metadata=_env("NAMING_AUDIT_MAX_ENTRIES", minimum=100, maximum=10_000_000)
    )
    audit_max_age_h: float = field(
        default=168.0, metadata=_env("NAMING_AUDIT_MAX_AGE_H", minimum=0.01, maximum=87_600.0)
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingError(problems)

    @property
    def database_path(self) -> Path:
        return self.db_path if self.db_path is not None else self.data_dir / "naming.sqlite3"

    def problems(self) -> list[str]:
        """Every range and cross-field rule this object breaks, each naming its variable."""
        found: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name, low, high = f.metadata["env"], f.metadata["min"], f.metadata["max"]
            if value != value or value in (float("inf"), float("-inf")):  # nan, inf
                found.append(f"{name} must be a finite number, got {value}")
            elif low is not None and value < low:
                found.append(f"{name} must be >= {low}, got {value}")
            elif high is not None and value > high:
                found.append(f"{name} must be <= {high}, got {value}")
        if self.log_level not in LOG_LEVELS:
            found.append(f"NAMING_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        for network in self.check_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                found.append(f"NAMING_HEALTH_CHECK_NETWORKS: {network!r} is not a CIDR network")
        if self.lease_grace_s <= 0:
            found.append(f"NAMING_LEASE_GRACE_S must be > 0, got {self.lease_grace_s}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            found.append("NAMING_REDIS_URL must be a redis://, rediss:// or unix:// URL")

        # Cross-field rules: each combination below parses but cannot work as meant.
        timeout_s = DEFAULT_HEARTBEAT_TIMEOUT_MS / 1000
        if self.sweep_enabled and self.sweep_interval_s >= timeout_s:
            # An instance would be marked unhealthy up to a whole sweep after its timeout:
            # clients would keep calling a dead instance for that long.
            found.append(
                f"NAMING_SWEEP_INTERVAL_S ({self.sweep_interval_s:g}) must be below the default "
                f"heartbeat timeout ({timeout_s:g} s); NAMING_SWEEP_ENABLED=false turns expiry off"
            )
        if self.distro_batch_window_ms / 1000 >= self.distro_verify_interval_s:
            # Verify rounds would send checksums of keys whose sync is still being batched,
            # and every round would ask peers to repair what the next batch delivers anyway.
            found.append(
                f"NAMING_DISTRO_BATCH_WINDOW_MS ({self.distro_batch_window_ms:g} ms) must be below "
                f"NAMING_DISTRO_VERIFY_INTERVAL_S ({self.distro_verify_interval_s:g} s)"
            )
        if self.login_max_address_failures < self.login_max_failures:
            # The per-address lock would always fire first: the per-user limit would be dead.
            found.append(
                f"NAMING_LOGIN_MAX_ADDRESS_FAILURES ({self.login_max_address_failures}) must be "
                f">= NAMING_LOGIN_MAX_FAILURES ({self.login_max_failures})"
            )
        if self.fault_drop_sync and self.distro_sync_ack:
            # With every sync lost, every acknowledged write would wait its timeout and fail.
            found.append("NAMING_FAULT_DROP_SYNC and NAMING_DISTRO_SYNC_ACK cannot both be on")
        return found


def known_variables() -> dict[str, str]:
    """Environment variable → field name, for every setting."""
    return {f.metadata["env"]: f.name for f in fields(NamingSettings)}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be a boolean (true/false)")


def django_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A ``DJANGO_*`` boolean (off by default), held to the same rule as ours."""
    raw = (os.environ if environ is None else environ).get(name, "")
    try:
        return raw != "" and _parse_bool(raw)
    except ValueError as exc:
        raise SettingError([f"{name} {exc}, got {raw!r}"]) from None


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _parse_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def _parse_path(raw: str) -> Path:
    return Path(raw).resolve()


def _parse_networks(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


_PARSERS: dict[object, Callable[[str], object]] = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: str,
    Path: _parse_path,
    Path | None: _parse_path,
    tuple[str, ...]: _parse_networks,
}


def from_environ(environ: Mapping[str, str] | None = None) -> NamingSettings:
    """Parse every ``NAMING_*`` variable of ``environ`` (default ``os.environ``), once.

    Raises :class:`SettingError` listing every unknown variable (with the closest known name)
    and every bad value; an empty variable keeps the default.
    """
    environ = os.environ if environ is None else environ
    known = known_variables()
    hints = typing.get_type_hints(NamingSettings)
    problems: list[str] = []
    for name in sorted(k for k in environ if k.startswith(PREFIX) and k not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"unknown setting {name}{hint}")
    # Any: each value's type is the field's, checked by its parser (typing cannot say that).
    values: dict[str, Any] = {}
    for env_name, attr in known.items():
        raw = environ.get(env_name, "")
        if raw == "":
            continue
        try:
            values[attr] = _PARSERS[hints[attr]](raw)
        except ValueError as exc:
            problems.append(f"{env_name} {exc}, got {raw!r}")
    if attr_level := values.get("log_level"):
        values["log_level"] = str(attr_level).strip().upper()
    if problems:
        raise SettingError(problems)
    # Range and cross-field rules run in __post_init__ (also for objects built in code).
    return NamingSettings(**values)
