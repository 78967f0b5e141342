"""Builds the pysyncobj node: the one adapter around the untyped library.

Known traps (DESIGN §5) and what we set against them:
- it binds 0.0.0.0 and accepts pickles: ``bindAddress`` is the node host, ``password`` is set;
- the journal defaults to memory and a journal without ``fullDumpFile`` loses data after
  compaction: both are files under the data dir;
- ``appendEntriesUseBatch`` puts a ~100 ms floor under each synchronous commit: off;
- ``leaderFallbackTimeout`` 30 s lets a cut-off leader believe it leads: 1.5 s;
- ``useFork`` makes a child hold our HTTP and raft sockets while it dumps: off (the dump is
  written on the tick thread; persistent data is small next to the ephemeral data);
- the tick thread dies with the thread that created the SyncObj: build it on the node process's
  main thread (``runnode``), after any fork;
- its TCP transport trusts whoever connects to the raft port (unbounded message length, idle
  connections kept forever, an accept error unbinds the port): ``raft.guard`` patches it, and the
  poller is ``poll`` (``select`` fails once a descriptor number reaches 1024) with the soft
  descriptor limit raised to the hard one.

Non-voting members (``RaftConfig.voter`` false) are pysyncobj read-only nodes, ``SyncObj(None,
voters)``: they bind no raft port, connect to every voter and announce themselves as
``readonly``; the leader sends them the log (and snapshots) like to a follower but never counts
them for a commit or a vote, and they never start an election. A command proposed on one is
forwarded to the leader it last heard from and its callback fires once the entry is applied
here, as on a follower. They keep the same journal and dump under the data dir: a restarted
non-voter replays its own copy (up to the commit index it stored) and fetches only what it
missed. The guard's patches hold: its connections are outgoing only (no listener to guard) and
every message is still length-capped and authenticated by the password.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf

from lib.limits import raise_fd_limit
from raft import guard
from raft.state import ReplicatedState


@dataclass(frozen=True, slots=True)
class RaftConfig:
    self_address: str  # host:raft_port (a non-voter binds nothing: for the status only)
    partners: tuple[str, ...]  # the voters' raft addresses, ours excluded
    data_dir: Path
    password: str
    # Election timeout range: a follower notices a dead leader within 0.35-0.75 s (fault tests
    # measured 0.6-1.9 s failover with pysyncobj's default 0.4-1.4 s).
    election_min_s: float = 0.35
    election_max_s: float = 0.75
    append_entries_period_s: float = 0.1
    leader_fallback_s: float = 1.5
    connection_retry_s: float = 0.5
    compaction_min_entries: int = 10000
    compaction_min_time_s: int = 300
    voter: bool = True

    def validate(self) -> None:
        """Cross-field rules (hashicorp/raft ``config.go``): raise, never assert."""
        if not self.voter and not self.partners:
            raise ValueError("a raft non-voter needs at least one voter to follow")
        if not self.password:
            raise ValueError("raft password must not be empty")
        if self.append_entries_period_s >= self.election_min_s:
            raise ValueError("raft append-entries period must be below the election timeout")
        if self.election_min_s >= self.election_max_s:
            raise ValueError("raft election min timeout must be below the max timeout")
        if self.leader_fallback_s <= self.append_entries_period_s:
            raise ValueError("raft leader fallback must exceed the append-entries period")

    @property
    def journal_file(self) -> Path:
        return self.data_dir / "raft" / "journal.bin"

    @property
    def dump_file(self) -> Path:
        return self.data_dir / "raft" / "dump.bin"


_durable_installed = False


def _fsync_dir(path: str) -> None:
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def install_durable_journal() -> None:
    """Make pysyncobj's file journal durable before it acknowledges.

    pysyncobj 0.3.17 writes log entries into an mmap and its term/vote/commit meta with a plain
    write + rename, and never syncs either: a ``kill -9`` is survived (the page cache outlives
    the process) but a power loss can drop entries this node already acknowledged to the leader,
    and so writes a client was told are committed. We sync the journal after every append or
    truncation (msync of the mapping, before the tick thread goes on to answer the leader or
    count its own vote) and fsync the meta file and its directory. Idempotent; process-wide.
    """
    global _durable_installed
    if _durable_installed:
        return
    from pysyncobj import journal

    file_journal = journal.FileJournal
    original_add = file_journal.add
    original_delete_from = file_journal.deleteEntriesFrom
    original_clear = file_journal.clear

    def add(self: Any, command: bytes, idx: int, term: int) -> None:
        original_add(self, command, idx, term)
        self.flush()

    def delete_entries_from(self: Any, entry_from: int) -> None:
        original_delete_from(self, entry_from)
        self.flush()

    def clear(self: Any) -> None:
        original_clear(self)
        self.flush()

    def store_meta(self: Any, meta: Any) -> None:
        path = self.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(journal.dumps(meta))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path)

    def durable_replace(src: str, dst: str) -> None:
        # The snapshot must be on disk before the journal entries it replaces are truncated.
        with open(src, "rb") as handle:
            os.fsync(handle.fileno())
        original_replace(src, dst)
        _fsync_dir(dst)

    from pysyncobj import serializer

    original_replace = serializer.atomicReplace
    serializer.atomicReplace = durable_replace
    file_journal.add = add
    file_journal.deleteEntriesFrom = delete_entries_from
    file_journal.clear = clear
    journal.MetaStorer.storeMeta = store_meta
    _durable_installed = True


def build_syncobj(config: RaftConfig, state: ReplicatedState, durable: bool = True) -> Any:
    config.validate()
    if durable:
        install_durable_journal()
    guard.install()
    raise_fd_limit()
    config.journal_file.parent.mkdir(parents=True, exist_ok=True)
    conf = SyncObjConf(
        password=config.password,
        bindAddress=config.self_address,
        journalFile=str(config.journal_file),
        fullDumpFile=str(config.dump_file),
        appendEntriesUseBatch=False,
        raftMinTimeout=config.election_min_s,
        raftMaxTimeout=config.election_max_s,
        appendEntriesPeriod=config.append_entries_period_s,
        leaderFallbackTimeout=config.leader_fallback_s,
        connectionRetryTime=config.connection_retry_s,
        logCompactionMinEntries=config.compaction_min_entries,
        logCompactionMinTime=config.compaction_min_time_s,
        useFork=False,
        dynamicMembershipChange=False,
        commandsWaitLeader=True,
        # The port may still be held by a previous incarnation for a moment after a restart.
        bindRetryTime=0.2,
        pollerType="poll",
    )
    self_node = config.self_address if config.voter else None  # None: a read-only node
    return SyncObj(self_node, list(config.partners), conf=conf, consumers=[state])


def wait_ready(syncobj: Any, deadline_s: float) -> bool:
    """Until this member has a leader and has applied everything it had committed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if syncobj.isReady() and syncobj._getLeader() is not None:
            return True
        time.sleep(0.02)
    return False
