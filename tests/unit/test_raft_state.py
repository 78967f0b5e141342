"""The replicated state through a real single-member pysyncobj node (journal + dump on disk)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from consistency.datum import Datum, DatumKey
from consistency.service import Change as StoredChange
from lib.errors import NamingError
from naming.changes import Change, CreateService, UpsertInstance
from naming.codec import DATUM_CODEC
from naming.domain import Instance, Selector, ServiceMeta, ServiceName
from raft.node import RaftConfig, build_syncobj, wait_ready
from raft.service import RaftConsistencyService
from raft.state import ReplicatedState
from testkit.harness import free_node_port

SVC = ServiceName("public", "DEFAULT_GROUP@@svc")


def start(data_dir: Path, port: int, seen: list[Datum]) -> tuple[RaftConsistencyService, object]:
    def on_applied(datum: Datum) -> int:
        seen.append(datum)
        return len(seen)

    state = ReplicatedState(on_applied, DATUM_CODEC, Change.decode)
    config = RaftConfig(
        self_address=f"127.0.0.1:{port}", partners=(), data_dir=data_dir, password="test-password"
    )
    syncobj = build_syncobj(config, state)
    assert wait_ready(syncobj, 20)
    return RaftConsistencyService(state, syncobj), syncobj


def test_committed_changes_are_replayed_from_the_journal_after_a_restart(tmp_path: Path):
    port = free_node_port()
    seen: list[Datum] = []
    service, syncobj = start(tmp_path, port, seen)
    key = DatumKey.instances(SVC, False)
    service.submit(key, UpsertInstance(Instance("127.0.0.1", 1, ephemeral=False), SVC.grouped), 5)
    service.submit(key, UpsertInstance(Instance("127.0.0.1", 2, ephemeral=False), SVC.grouped), 5)
    assert service.get(key).revision == 2
    service.stop()
    syncobj.destroy_synchronous()  # type: ignore[attr-defined]

    replayed: list[Datum] = []
    again, syncobj2 = start(tmp_path, port, replayed)
    try:
        datum = again.get(key)
        assert datum is not None and datum.revision == 2
        assert sorted(i.port for i in datum.value.values()) == [1, 2]
        assert any(d.key == key for d in replayed)  # listeners hear about replayed data
    finally:
        syncobj2.destroy_synchronous()  # type: ignore[attr-defined]


def test_a_rejected_change_reports_its_error_and_changes_nothing(tmp_path: Path):
    service, syncobj = start(tmp_path, free_node_port(), [])
    try:
        key = DatumKey.meta(SVC)
        create = CreateService(0.1, {}, Selector(), SVC.grouped)
        service.submit(key, create, 5)
        with pytest.raises(NamingError, match="already exists") as info:
            service.submit(key, create, 5)
        assert info.value.status == 400
        meta = service.get(key)
        assert meta is not None and meta.revision == 1 and isinstance(meta.value, ServiceMeta)
    finally:
        syncobj.destroy_synchronous()  # type: ignore[attr-defined]


def test_apply_is_deterministic_for_the_same_command_sequence():
    """Two members fed the same log end with identical stored values."""
    commands = [
        (DatumKey.meta(SVC).encode(), json.dumps(CreateService(0.2, {}, Selector(), "x").encode())),
        (
            DatumKey.instances(SVC, False).encode(),
            json.dumps(
                UpsertInstance(Instance("127.0.0.1", 3, ephemeral=False), SVC.grouped).encode()
            ),
        ),
    ]
    states = [
        ReplicatedState(lambda d: 0, DATUM_CODEC, Change.decode),
        ReplicatedState(lambda d: 0, DATUM_CODEC, Change.decode),
    ]
    for state in states:
        for key_text, change in commands:
            state.apply_change(key_text, change, _doApply=True)
    assert states[0].values == states[1].values


def test_values_survive_log_compaction_and_a_restart_from_the_snapshot(tmp_path: Path):
    port = free_node_port()
    service, syncobj = start(tmp_path, port, [])
    key = DatumKey.instances(SVC, False)
    for n in range(1, 6):
        service.submit(
            key, UpsertInstance(Instance("127.0.0.1", n, ephemeral=False), SVC.grouped), 5
        )
    syncobj.forceLogCompaction()  # type: ignore[attr-defined]
    dump = tmp_path / "raft" / "dump.bin"
    import time

    deadline = time.monotonic() + 10
    while not dump.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dump.exists()
    service.submit(key, UpsertInstance(Instance("127.0.0.1", 6, ephemeral=False), SVC.grouped), 5)
    service.stop()
    syncobj.destroy_synchronous()  # type: ignore[attr-defined]

    restored: list[Datum] = []
    again, syncobj2 = start(tmp_path, port, restored)
    try:
        datum = again.get(key)
        assert datum is not None and datum.revision == 6
        assert sorted(i.port for i in datum.value.values()) == [1, 2, 3, 4, 5, 6]
        assert any(d.key == key for d in restored)
    finally:
        syncobj2.destroy_synchronous()  # type: ignore[attr-defined]


def test_concurrent_submissions_are_group_committed_and_each_gets_its_own_result(tmp_path: Path):
    from concurrent.futures import ThreadPoolExecutor

    service, syncobj = start(tmp_path, free_node_port(), [])
    try:

        def create(n: int) -> int:
            name = ServiceName("public", f"DEFAULT_GROUP@@gc-{n % 10}")
            try:
                service.submit(DatumKey.meta(name), CreateService(0.0, {}, Selector(), "x"), 10)
                return 1
            except NamingError:
                return 0  # "already exists": only one creation per name may win

        with ThreadPoolExecutor(16) as pool:
            created = sum(pool.map(create, range(200)))
        assert created == 10
        status = service.status()
        assert status["batchedChanges"] == 200
        assert status["batches"] < 200  # several changes shared a log entry
    finally:
        service.stop()
        syncobj.destroy_synchronous()  # type: ignore[attr-defined]


# -- failure policy: a programming error inside apply ------------------------------------------


class Broken:
    """A change whose apply has a bug (not a NamingError): what the policy is for."""

    def apply(self, current: Any) -> None:
        raise KeyError("a bug")

    def encode(self) -> dict[str, Any]:
        return {"type": "broken"}


def decode_with_broken(data: Any) -> StoredChange:
    if isinstance(data, dict) and data.get("type") == "broken":
        return Broken()
    return Change.decode(data)


def upsert_json(port: int) -> str:
    return json.dumps(UpsertInstance(Instance("127.0.0.1", port, ephemeral=False), "x").encode())


def test_a_programming_error_in_apply_is_an_internal_error_and_changes_nothing():
    state = ReplicatedState(lambda d: 0, DATUM_CODEC, decode_with_broken)
    key = DatumKey.instances(SVC, False).encode()
    state.apply_change(key, upsert_json(1), _doApply=True)
    before = state.values

    revision, error, ticket = state.apply_change(key, json.dumps({"type": "broken"}), _doApply=True)

    assert (revision, ticket) == (0, 0)
    assert error is not None and error["status"] == 500 and error["code"] == "internal"
    assert state.values == before
    assert state.apply_failures == 1 and "KeyError" in state.last_apply_failure


def test_a_broken_change_in_a_batch_does_not_stop_the_changes_after_it():
    state = ReplicatedState(lambda d: 0, DATUM_CODEC, decode_with_broken)
    key = DatumKey.instances(SVC, False).encode()
    batch = [
        [key, json.loads(upsert_json(1))],
        [key, {"type": "broken"}],
        [key, json.loads(upsert_json(2))],
    ]
    results = state.apply_batch(json.dumps(batch), _doApply=True)
    assert [r[0] for r in results] == [1, 0, 2]
    assert results[1][1] is not None and results[1][1]["status"] == 500
    datum = state.get(DatumKey.instances(SVC, False))
    assert datum is not None and sorted(i.port for i in datum.value.values()) == [1, 2]


def test_through_raft_the_submitter_gets_the_internal_error_at_once_and_the_node_goes_on(
    tmp_path: Path,
):
    port = free_node_port()
    state = ReplicatedState(lambda d: 0, DATUM_CODEC, decode_with_broken)
    config = RaftConfig(
        self_address=f"127.0.0.1:{port}", partners=(), data_dir=tmp_path, password="test-password"
    )
    syncobj = build_syncobj(config, state)
    assert wait_ready(syncobj, 20)
    service = RaftConsistencyService(state, syncobj)
    try:
        key = DatumKey.instances(SVC, False)
        with pytest.raises(NamingError, match="internal error") as info:
            service.submit(key, Broken(), 5)
        assert info.value.status == 500  # an answer, not a 503 after the 5 s timeout
        service.submit(key, UpsertInstance(Instance("127.0.0.1", 7, ephemeral=False), "x"), 5)
        assert service.get(key) is not None
        assert service.status()["applyFailures"] == 1
    finally:
        service.stop()
        syncobj.destroy_synchronous()


def test_a_nonvoter_forwards_writes_to_the_leader_and_replays_its_own_journal(tmp_path: Path):
    """A read-only pysyncobj node: a write submitted on it is committed by the voter and applied
    on both; restarted with no voter reachable, it still has its copy (journal + commit index)."""
    voter_port, other_port = free_node_port(), free_node_port()
    voter_state = ReplicatedState(lambda d: 0, DATUM_CODEC, Change.decode)
    voter_sync = build_syncobj(
        RaftConfig(f"127.0.0.1:{voter_port}", (), tmp_path / "v", "test-password"), voter_state
    )

    def nonvoter() -> tuple[RaftConsistencyService, Any]:
        state = ReplicatedState(lambda d: 0, DATUM_CODEC, Change.decode)
        config = RaftConfig(
            f"127.0.0.1:{other_port}",
            (f"127.0.0.1:{voter_port}",),
            tmp_path / "nv",
            "test-password",
            voter=False,
        )
        syncobj = build_syncobj(config, state)
        return RaftConsistencyService(state, syncobj, config.self_address, voter=False), syncobj

    service, syncobj = nonvoter()
    key = DatumKey.instances(SVC, False)
    try:
        assert wait_ready(voter_sync, 20) and wait_ready(syncobj, 20)
        service.submit(key, UpsertInstance(Instance("127.0.0.1", 1, ephemeral=False), "x"), 10)
        assert service.get(key) is not None  # applied here before submit returned
        assert voter_state.get(key) is not None
        status = service.status()
        assert status["voter"] is False and status["role"] == "FOLLOWER"
        assert status["self"] == f"127.0.0.1:{other_port}"
        assert status["leader"] == f"127.0.0.1:{voter_port}"
        assert RaftConsistencyService(voter_state, voter_sync).status()["nonVotersConnected"] == 1
        # pysyncobj stores the commit index with the journal meta once a second: past that, a
        # restart applies the entry without a leader (before, the next leader would send it).
        time.sleep(1.5)
    finally:
        service.stop()
        syncobj.destroy_synchronous()
        voter_sync.destroy_synchronous()

    again, syncobj2 = nonvoter()
    try:
        deadline = time.monotonic() + 10
        while again.get(key) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again.get(key) is not None  # replayed from its own journal, no leader needed
        assert not again.is_available()  # and no leader: a write would answer 503
    finally:
        again.stop()
        syncobj2.destroy_synchronous()
