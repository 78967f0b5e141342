"""The audit trail's core (``naming.audit``), its seam in the consistency delegate, the signed
actor header of forwarded writes, and the JSON endpoint over an in-memory runtime."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.test import Client

from consistency.datum import Datum, DatumKey, KeyKind
from distro.signing import ACTOR, Verifier, sign
from lib.errors import Forbidden
from lib.keys import peer_key as derive_key
from naming import audit
from naming import commands as s
from naming.audit import AuditEntry, AuditFilter, AuditLog, acting, because, change_fields
from naming.changes import SetHealth, SetSwitch, UpsertInstance
from naming.domain import Instance, InstanceKey, ServiceName
from node.runtime import NodeRuntime

SVC = ServiceName("public", "DEFAULT_GROUP@@orders")


def register(node: NodeRuntime, ip: str, port: int = 80, **kw: Any) -> None:
    node.operations.register_instance(s.RegisterInstance(SVC, Instance(ip=ip, port=port, **kw)))


class Clock:
    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def write(log: AuditLog, ip: str, user: str = "u") -> None:
    key = DatumKey.instances(SVC, True)
    inst = Instance(ip=ip, port=80)
    after = Datum(key, {inst.key: inst}, 1)
    with acting(user, "10.9.9.9", audit.VIA_API, "POST /x"):
        log.on_write(key, UpsertInstance(inst, SVC.grouped), None, after)


# -- actor context -------------------------------------------------------------------------------


def test_the_actor_is_the_innermost_block_and_unattributed_outside_any():
    assert audit.current_actor() == audit.UNATTRIBUTED
    with acting("alice", "10.0.0.1", audit.VIA_API, "POST /a"):
        with because(audit.BEAT):
            assert audit.current_actor() == audit.Actor("alice", "10.0.0.1", "api", "beat")
        with acting(via=audit.VIA_SYSTEM, reason=audit.AUTO_CLEAN):
            assert audit.current_actor().user == "system"
        assert audit.current_actor().reason == "POST /a"
    assert audit.current_actor() == audit.UNATTRIBUTED


# -- recording through the seam ------------------------------------------------------------------


def test_register_update_and_deregister_are_recorded_with_actor_and_summaries(node: NodeRuntime):
    with acting("alice", "10.0.0.1", audit.VIA_API, "POST /nacos/v1/ns/instance"):
        register(node, "1.1.1.1", weight=2.0, metadata={"v": "1"})
        register(node, "1.1.1.1", weight=3.0)
    with acting("bob", "10.0.0.2", audit.VIA_API, "DELETE /nacos/v1/ns/instance"):
        node.operations.deregister_instance(
            s.InstanceRef(SVC, InstanceKey("DEFAULT", "1.1.1.1", 80), True)
        )
    entries = node.audit.query().entries
    assert [(e.action, e.user) for e in entries] == [
        ("deregister", "bob"),
        ("re-register", "alice"),
        ("register", "alice"),
    ]
    newest, _, first = entries
    assert newest.object == "public/DEFAULT_GROUP@@orders/DEFAULT/1.1.1.1:80"
    assert (newest.kind, newest.address, newest.member) == (
        "instance",
        "10.0.0.2",
        "127.0.0.1:8848",
    )
    assert newest.before is not None and newest.before["weight"] == 3.0
    assert newest.after is None
    assert first.before is None and first.after is not None
    assert first.after["metadata"] == {"v": "1"}
    assert (first.namespace, first.service, first.cluster, first.instance) == (
        "public",
        "DEFAULT_GROUP@@orders",
        "DEFAULT",
        "1.1.1.1:80",
    )


def test_services_clusters_and_switches_are_recorded(node: NodeRuntime):
    from naming.domain import ClusterConfig, Selector

    node.operations.create_service(s.ServiceSpec(SVC, 0.5, {}, Selector()))
    node.operations.put_cluster(SVC, ClusterConfig(name="c1"))
    node.operations.set_switch("distroThreshold", "0.8")
    node.operations.delete_service(SVC)
    kinds = [(e.kind, e.action, e.object) for e in node.audit.query().entries]
    assert kinds == [
        ("service", "delete", "public/DEFAULT_GROUP@@orders"),
        ("switch", "update", "switch/distroThreshold"),
        ("cluster", "create", "public/DEFAULT_GROUP@@orders/c1"),
        ("service", "create", "public/DEFAULT_GROUP@@orders"),
    ]
    assert all(
        e.user == "system" and e.reason == "unattributed" for e in node.audit.query().entries
    )


def test_a_beat_that_only_refreshes_is_not_recorded_one_that_heals_is(node: NodeRuntime):
    register(node, "2.2.2.2")
    key = InstanceKey("DEFAULT", "2.2.2.2", 80)
    before = len(node.audit)
    with acting("carol", "10.0.0.3", audit.VIA_API, "PUT /nacos/v1/ns/instance/beat"):
        node.operations.beat(s.Beat(SVC, key, None))
    assert len(node.audit) == before
    node.consistency.submit(DatumKey.instances(SVC, True), SetHealth(((key, False),)))
    with acting("carol", "10.0.0.3", audit.VIA_API, "PUT /nacos/v1/ns/instance/beat"):
        node.operations.beat(s.Beat(SVC, key, None))
    healed = node.audit.query().entries[0]
    assert (healed.action, healed.user, healed.reason) == ("health", "carol", "beat")
    assert healed.before is not None and healed.before["healthy"] is False
    assert healed.after is not None and healed.after["healthy"] is True


def test_a_no_op_health_verdict_is_not_recorded(node: NodeRuntime):
    register(node, "3.3.3.3")
    count = len(node.audit)
    key = InstanceKey("DEFAULT", "3.3.3.3", 80)
    node.consistency.submit(DatumKey.instances(SVC, True), SetHealth(((key, True),)))
    assert len(node.audit) == count


def test_background_jobs_record_their_reason(node: NodeRuntime):
    register(node, "4.4.4.4")
    key = InstanceKey("DEFAULT", "4.4.4.4", 80)
    from naming.changes import RemoveInstances

    node.health._safe_submit(
        DatumKey.instances(SVC, True), RemoveInstances((key,)), audit.HEARTBEAT_EXPIRY
    )
    entry = node.audit.query().entries[0]
    assert (entry.user, entry.via, entry.reason, entry.action) == (
        "system",
        "system",
        "heartbeat expiry",
        "deregister",
    )


class Broken:
    def on_write(self, key: DatumKey, change: Any, before: Datum | None, after: Datum) -> None:
        raise RuntimeError("observer bug")


def test_an_observer_error_never_fails_the_write_and_is_counted(node: NodeRuntime):
    node.consistency.add_observer(Broken())
    register(node, "5.5.5.5")  # no exception
    assert node.registry.get(SVC) is not None
    assert node.consistency.observer_errors == 1
    assert node.audit.query().entries[0].instance == "5.5.5.5:80"  # the others still ran


# -- retention and queries ----------------------------------------------------------------------


def test_retention_keeps_the_newest_by_count_and_drops_by_age():
    clock = Clock()
    log = AuditLog("m", max_entries=100, max_age_h=1.0, clock_ms=clock)
    for n in range(150):
        write(log, f"10.0.{n // 250}.{n % 250}")
    assert len(log) == 100
    assert log.query(page_size=1).entries[0].instance == "10.0.0.149:80"
    clock.ms += 3_600_001
    write(log, "10.1.0.1")
    page = log.query()
    assert (page.total, page.entries[0].instance) == (1, "10.1.0.1:80")
    log.trim()
    assert len(log) == 1
    assert log.stats.dropped_by_age == 99


def test_query_filters_and_pages_newest_first():
    clock = Clock()
    log = AuditLog("m", clock_ms=clock)
    for n in range(10):
        clock.ms += 1000
        write(log, f"10.0.0.{n}", user="alice" if n % 2 else "bob")
    assert log.query(AuditFilter(user="alice")).total == 5
    assert log.query(AuditFilter(object="/10.0.0.7:")).entries[0].instance == "10.0.0.7:80"
    assert log.query(AuditFilter(object="public/DEFAULT_GROUP@@ord")).total == 10
    assert log.query(AuditFilter(kind="user")).total == 0
    window = log.query(AuditFilter(since_ms=1_003_000, until_ms=1_005_000))
    assert [e.instance for e in window.entries] == ["10.0.0.4:80", "10.0.0.3:80", "10.0.0.2:80"]
    second = log.query(page_no=2, page_size=3)
    assert second.total == 10
    assert [e.instance for e in second.entries] == ["10.0.0.6:80", "10.0.0.5:80", "10.0.0.4:80"]


def test_entries_are_persisted_and_reloaded_with_rotation(tmp_path: Path):
    clock = Clock()
    log = AuditLog("m", max_entries=100, data_dir=tmp_path, clock_ms=clock)
    for n in range(70):
        write(log, f"10.0.0.{n}")
    log.flush()
    for n in range(70, 140):
        write(log, f"10.0.0.{n}")
    log.flush()
    assert (tmp_path / "audit.jsonl.1").exists()  # rotated once past 100 lines
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 70
    (tmp_path / "audit.jsonl").open("a").write('{"time": 1, "torn')  # a crash mid-line
    reloaded = AuditLog("m", max_entries=100, data_dir=tmp_path, clock_ms=clock)
    reloaded.load()
    assert len(reloaded) == 100
    newest = reloaded.query().entries[0]
    assert (newest.instance, newest.user, newest.address) == ("10.0.0.139:80", "u", "10.9.9.9")


def test_a_reloaded_instance_entry_equals_the_live_one(tmp_path: Path):
    """Instance writes are persisted in their compact form; read back, they summarise exactly as
    the live record did (before and after, metadata included)."""
    log = AuditLog("m", data_dir=tmp_path)
    key = DatumKey.instances(SVC, True)
    old = Instance(ip="10.1.1.1", port=80, weight=2.0, metadata={"zone": "a"})
    new = Instance(ip="10.1.1.1", port=80, weight=3.0, healthy=False, metadata={"zone": "b"})
    with acting("alice", "10.9.9.9", audit.VIA_CONSOLE, "console: edit instance"):
        log.on_write(
            key,
            UpsertInstance(new, SVC.grouped),
            Datum(key, {old.key: old}, 1),
            Datum(key, {new.key: new}, 2),
        )
    live = log.query().entries
    log.flush()
    line = (tmp_path / "audit.jsonl").read_text().splitlines()[0]
    assert json.loads(line)[0] == 1  # the compact form
    reloaded = AuditLog("m", data_dir=tmp_path)
    reloaded.load()
    assert reloaded.query().entries == live
    assert live[0].before["metadata"] == {"zone": "a"} and live[0].after["weight"] == 3.0


# -- no password hash, ever -----------------------------------------------------------------


@dataclass(frozen=True)
class FakeAccountChange:
    type_name: ClassVar[str] = "create_user"
    username: str
    password_hash: str

    def encode(self) -> dict[str, Any]:
        return {"type": self.type_name, "username": self.username, "hash": self.password_hash}

    def apply(self, current: Any) -> Any:
        return current


HASH = "pbkdf2_sha256$870000$salt$c2VjcmV0LWhhc2g="


def test_account_changes_never_keep_a_hash(tmp_path: Path):
    assert change_fields(FakeAccountChange("alice", HASH)) == {
        "username": "alice",
        "password": "changed",
    }
    nested = SetSwitch("x", "y")
    assert change_fields(nested) == {"entry": "x", "value": "y"}
    log = AuditLog("m", data_dir=tmp_path)
    key = DatumKey(KeyKind.ACCOUNTS)
    with acting("admin", "10.0.0.1", audit.VIA_CONSOLE, "create user"):
        log.on_write(key, FakeAccountChange("alice", HASH), None, Datum(key, {"x": HASH}, 1))
    entry = log.query().entries[0]
    assert (entry.kind, entry.object, entry.action) == ("user", "user/alice", "create_user")
    log.flush()
    stored = (tmp_path / "audit.jsonl").read_text()
    assert "pbkdf2" not in stored and HASH not in json.dumps(entry.to_json())


# -- the signed actor header ------------------------------------------------------------------


KEY = derive_key("cluster-secret")
ME = "10.0.0.2:8848"
PATH = "/nacos/v1/ns/instance?serviceName=s"


def test_the_actor_header_is_covered_by_the_peer_signature():
    headers = sign(KEY, "POST", PATH, b"", "10.0.0.1:8848", ME, now=1000.0, actor="user=alice")
    assert headers[ACTOR] == "user=alice"
    assert Verifier(KEY, ME).verify("POST", PATH, b"", headers, now=1000.0) == "10.0.0.1:8848"
    for forged in (
        {**headers, ACTOR: "user=admin"},
        {k: v for k, v in headers.items() if k != ACTOR},
    ):
        with pytest.raises(Forbidden, match="does not match"):
            Verifier(KEY, ME).verify("POST", PATH, b"", forged, now=1000.0)
    plain = sign(KEY, "POST", PATH, b"", "10.0.0.1:8848", ME, now=1000.0)
    with pytest.raises(Forbidden, match="does not match"):
        Verifier(KEY, ME).verify("POST", PATH, b"", {**plain, ACTOR: "user=x"}, now=1000.0)


# -- the JSON endpoint and the v1 edge's actor -----------------------------------------------


def test_v1_writes_carry_the_caller_and_the_endpoint_lists_them(node: NodeRuntime, client: Client):
    client.post(
        "/nacos/v1/ns/instance?serviceName=orders&ip=6.6.6.6&port=80",
        REMOTE_ADDR="10.1.2.3",
    )
    answer = client.get("/nacos/v1/console/audit?kind=instance&object=6.6.6.6")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["totalCount"] == 1
    assert body["membersAnswered"] == ["127.0.0.1:8848"]
    assert body["membersFailed"] == {}
    item = body["pageItems"][0]
    assert (item["user"], item["address"], item["via"], item["reason"]) == (
        "anonymous",
        "10.1.2.3",
        "api",
        "POST /nacos/v1/ns/instance",
    )
    assert item["time"] > 0 and item["action"] == "register"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "since must be a time in ms"),
        ("since=10&until=5", "since must not be after until"),
        ("pageSize=0", "pageSize must be 1-1000"),
        ("pageNo=100&pageSize=1000", "pageNo x pageSize must be at most 10000"),
        ("kind=rocket", "kind must be one of"),
        ("scope=everywhere", "scope must be cluster or local"),
    ],
)
def test_bad_audit_queries_are_400(node: NodeRuntime, client: Client, query: str, message: str):
    answer = client.get(f"/nacos/v1/console/audit?{query}")
    assert answer.status_code == 400
    assert message in answer.content.decode()


def test_an_entry_round_trips_through_json():
    entry = AuditEntry(5, "m", "u", "a", "api", "r", "instance", "o", "register", before={"x": 1})
    assert AuditEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry


def test_real_account_changes_are_summarised_without_their_hashes(node: NodeRuntime):
    with acting("nacos", "10.0.0.1", audit.VIA_CONSOLE, "create user"):
        node.accounts.create_user("alice", "secret-password")
        node.accounts.set_password("alice", "other-password")
        node.accounts.bind_role("ROLE_DEV", "alice")
        node.accounts.add_permission("ROLE_DEV", "dev:*:*", "rw")
    entries = node.audit.query(AuditFilter(user="nacos")).entries
    assert [(e.kind, e.object, e.action) for e in entries] == [
        ("permission", "permission/ROLE_DEV/dev:*:*/rw", "add_permission"),
        ("role", "role/ROLE_DEV/alice", "bind_role"),
        ("user", "user/alice", "set_password"),
        ("user", "user/alice", "create_user"),
    ]
    assert entries[2].after == {"username": "alice", "password": "changed"}
    dumped = json.dumps([e.to_json() for e in entries])
    assert "pbkdf2" not in dumped and "password_hash" not in dumped


def test_namespace_changes_keep_before_and_after(node: NodeRuntime):
    node.operations.create_namespace("dev", "Dev", "first")
    node.operations.update_namespace("dev", "Development", "second")
    node.operations.delete_namespace("dev")
    entries = node.audit.query(AuditFilter(kind="namespace")).entries
    assert [(e.action, e.object, e.namespace) for e in entries] == [
        ("delete", "namespace/dev", "dev"),
        ("update", "namespace/dev", "dev"),
        ("create", "namespace/dev", "dev"),
    ]
    assert entries[1].before == {"name": "Dev", "description": "first"}
    assert entries[1].after == {"name": "Development", "description": "second"}
