"""What the audit trail costs a register, measured in one process (issue #10 item 6).

wrk figures on this shared 2-core box move by more than the 5 % budget between two runs of the
same code, so this script measures the cost directly: CPU time (``time.process_time``) per
``POST /nacos/v1/ns/instance`` through Django's test client on an in-memory node, with the audit
observer attached and detached, interleaved round by round (median of ``--rounds``); the writer
thread's work (summary + JSON line + append) is done inside the measured window. Then the parts
on their own: ``on_write``, one ``acting`` block, the writer per entry, the ring's memory per
entry, and query times over a full ring.

    .venv/bin/python bench/audit.py [--requests 500] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")


def register_ab(requests: int, rounds: int) -> tuple[float, float]:
    import django

    django.setup()
    from django.test import Client

    from node import runtime
    from node.runtime import NodeConfig, in_memory_runtime

    rt = in_memory_runtime(NodeConfig(port=8848))
    runtime.install(rt)
    rt.audit.path = Path(tempfile.mkdtemp()) / "audit.jsonl"  # persisted, as on a real node
    client = Client()
    paths = [
        f"/nacos/v1/ns/instance?serviceName=bench-{n % 100}"
        f"&ip=10.0.{n // 250 % 250}.{n % 250}&port={1000 + n}"
        for n in range(requests)
    ]
    observers = rt.consistency._observers

    def run(audited: bool) -> float:
        rt.consistency._observers = observers if audited else ()
        start = time.process_time()
        for path in paths:
            client.post(path)
        if audited:
            rt.audit.flush()
        return (time.process_time() - start) / requests * 1e6

    for _ in range(2):  # warm up both paths
        run(True)
        run(False)
    without: list[float] = []
    with_audit: list[float] = []
    for r in range(rounds):
        for audited in (r % 2 == 0, r % 2 != 0):
            (with_audit if audited else without).append(run(audited))
    runtime.install(None)
    rt.stop()
    return statistics.median(without), statistics.median(with_audit)


def parts() -> None:
    from consistency.datum import Datum, DatumKey
    from naming import audit
    from naming.changes import UpsertInstance
    from naming.domain import Instance, ServiceName

    n = 100_000
    svc = ServiceName("public", "DEFAULT_GROUP@@bench")
    key = DatumKey.instances(svc, True)
    instances = [
        Instance(ip=f"10.{i // 62500}.{i // 250 % 250}.{i % 250}", port=80) for i in range(n)
    ]
    changes = [UpsertInstance(i, svc.grouped) for i in instances]
    afters = [Datum(key, {i.key: i}, 1) for i in instances]

    def fill() -> audit.AuditLog:
        # As the edge does it: a new actor and a new key for every request (equal values).
        log = audit.AuditLog("m", n, data_dir=Path(tempfile.mkdtemp()))
        for k in range(n):
            with audit.acting("nacos", "127.0.0.1", "api", "POST /nacos/v1/ns/instance"):
                log.on_write(DatumKey.instances(svc, True), changes[k], None, afters[k])
        return log

    start = time.process_time()
    log = fill()
    print(f"acting() + on_write (register): {(time.process_time() - start) / n * 1e6:6.2f} us")
    start = time.process_time()
    for _ in range(n):
        with audit.acting("nacos", "127.0.0.1", "api", "POST /x"):
            pass
    print(f"acting() per request:       {(time.process_time() - start) / n * 1e6:6.2f} us")
    start = time.process_time()
    log.flush()
    print(f"writer per entry:           {(time.process_time() - start) / n * 1e6:6.2f} us")
    log.flush()
    tracemalloc.start()
    log = fill()
    log.flush()  # the file queue is not kept: measure the ring alone
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"ring memory per entry:      {current / n:6.0f} bytes (record, time, what it shares)")
    for name, filters in (
        ("none", audit.AuditFilter()),
        ("object", audit.AuditFilter(object="10.1.")),
        ("user", audit.AuditFilter(user="bob")),
    ):
        start = time.process_time()
        page = log.query(filters)
        took = time.process_time() - start
        print(f"query, 100k entries, filter {name:6}: {took:.3f} s (matches {page.total})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    without, with_audit = register_ab(args.requests, args.rounds)
    print(
        f"register CPU per request: {without:.1f} us without the audit observer, "
        f"{with_audit:.1f} us with it: ratio {with_audit / without:.3f}"
    )
    parts()


if __name__ == "__main__":
    main()
