#!/usr/bin/env python3
"""Set-up and everyday commands with nothing but Python 3.11 on the machine.

    python3 dev.py run [runnode options]   # venv + deps, then a standalone node on :8848
    python3 dev.py test [pytest options]   # venv + deps (and .venv-sdk3: nacos-sdk-python
                                           # 3.2.0), then lint, typecheck, the whole suite
    python3 dev.py test-fast [options]     # venv + deps, then the unit tests only (under a minute)
    python3 dev.py lint                    # venv + deps, then lint-imports (layering) and ruff
    python3 dev.py typecheck               # venv + deps, then mypy (strict, django-stubs)
    python3 dev.py bench [bench options]   # venv + deps, then bench/run.py (needs wrk)
    python3 dev.py bench-raft [options]    # venv + deps, then bench/raft.py (needs wrk)
    python3 dev.py bench-distro [options]  # venv + deps, then bench/distro.py (needs wrk)
    python3 dev.py bench-capacity [opts]   # venv + deps, then bench/capacity.py: 20,000
                                           # instances beating every 5 s for 2 minutes
    python3 dev.py bench-peers [options]   # venv + deps, then bench/peers.py: the node beside
                                           # etcd 3.4 (needs wrk; installs etcd-server if missing)
    python3 dev.py bench-serving [options] # venv + deps, then bench/serving.py: the serving-stack
                                           # candidates side by side (needs wrk)
    python3 dev.py bench-grpc [options]    # venv + deps, then bench/grpc.py: the Nacos 2.x gRPC
                                           # edge (throughput beside an empty-call floor, push
                                           # latency, 2,000 clients); --quick for a short look
    python3 dev.py bench-watch [options]   # venv + deps, then bench/watch.py: 5,000 event
                                           # streams under 200 changes/s (delivery latency,
                                           # CPU, memory per stream) and one service watched by
                                           # polling, long-poll and a stream; --quick
    python3 dev.py cluster [options]       # venv + deps, then tools/cluster.py: redis, celery
                                           # worker and 3 members on :8848/:8858/:8868

The virtual environment lives in ``.venv`` and is (re)installed only when the requirement files
change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
# nacos-sdk-python 3.2.0 has the same distribution name as the 2.0.9 in .venv: its own environment.
SDK3_VENV = ROOT / ".venv-sdk3"
SDK3_REQUIREMENTS = ROOT / "requirements-sdk3.txt"


def ensure_env(env: Path, requirements: Path, inputs: tuple[str, ...]) -> None:
    """Create ``env`` and ``pip install -r requirements`` into it, again only when one of the
    ``inputs`` (requirement files) has changed since the last install."""
    python = env / "bin" / "python"
    stamp = env / ".requirements.sha256"
    digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in inputs)).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return
    if not python.exists():
        print(f"creating {env.name} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(env)
    print(f"installing {requirements.name} ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    stamp.write_text(digest)


def ensure_venv() -> None:
    ensure_env(VENV, ROOT / "requirements-dev.txt", ("requirements.txt", "requirements-dev.txt"))


def ensure_sdk3_venv() -> None:
    """``.venv-sdk3`` with requirements-sdk3.txt alone (nacos-sdk-python 3.2.0)."""
    ensure_env(SDK3_VENV, SDK3_REQUIREMENTS, (SDK3_REQUIREMENTS.name,))


def run(args: list[str]) -> int:
    ensure_venv()
    command = [
        str(PY),
        "manage.py",
        "runnode",
        "--host",
        "127.0.0.1",
        "--port",
        "8848",
        "--data-dir",
        "data",
        *args,
    ]
    os.chdir(ROOT)
    os.execv(command[0], command)


def run_steps(steps: list[list[str]]) -> int:
    """Run each command from the repository root, echoed; stop at the first failure."""
    for step in steps:
        print(
            "$",
            " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)),
            flush=True,
        )
        if subprocess.run(step, cwd=ROOT).returncode != 0:
            return 1
    return 0


def lint_steps() -> list[list[str]]:
    bin_dir = VENV / "bin"
    return [
        [str(bin_dir / "lint-imports")],  # the layering contracts (pyproject.toml)
        [str(bin_dir / "ruff"), "check", "."],
    ]


def typecheck_steps() -> list[list[str]]:
    return [[str(VENV / "bin" / "mypy"), "."]]


def lint(args: list[str]) -> int:
    ensure_venv()
    return run_steps(lint_steps())


def typecheck(args: list[str]) -> int:
    ensure_venv()
    return run_steps(typecheck_steps())


def test_fast(args: list[str]) -> int:
    # Unit tests only: in-process, no node processes, no Redis (about 20 s on a 2-core box).
    ensure_venv()
    return run_steps([[str(PY), "-m", "pytest", "-q", "tests/unit", *args]])


def test(args: list[str]) -> int:
    ensure_venv()
    ensure_sdk3_venv()  # the gRPC end-to-end tests drive nacos-sdk-python 3.2.0 from it
    if run_steps(lint_steps() + typecheck_steps()) != 0:
        return 1
    # Two workers: slow timing scenarios run beside the rest (see tests/e2e/test_sdk_timing.py).
    pytest = [str(PY), "-m", "pytest", "-n", "2", "--dist", "loadgroup", *args]
    return subprocess.run(pytest, cwd=ROOT).returncode


def bench(args: list[str]) -> int:
    return bench_script("run.py", args)


def bench_raft(args: list[str]) -> int:
    return bench_script("raft.py", args)


def bench_distro(args: list[str]) -> int:
    return bench_script("distro.py", args)


def bench_capacity(args: list[str]) -> int:
    return bench_script("capacity.py", args)


def bench_peers(args: list[str]) -> int:
    return bench_script("peers.py", args)


def bench_serving(args: list[str]) -> int:
    return bench_script("serving.py", args)


def bench_grpc(args: list[str]) -> int:
    return bench_script("grpc.py", args)


def bench_watch(args: list[str]) -> int:
    return bench_script("watch.py", args)


def cluster(args: list[str]) -> int:
    ensure_venv()
    command = [str(PY), str(ROOT / "tools" / "cluster.py"), *args]
    os.chdir(ROOT)
    os.execv(command[0], command)  # same PID: Ctrl-C and SIGTERM reach the supervisor


def bench_script(name: str, args: list[str]) -> int:
    ensure_venv()
    return subprocess.run([str(PY), str(ROOT / "bench" / name), *args], cwd=ROOT).returncode


def main() -> int:
    commands = {
        "run": run,
        "test": test,
        "test-fast": test_fast,
        "lint": lint,
        "typecheck": typecheck,
        "bench": bench,
        "bench-raft": bench_raft,
        "bench-distro": bench_distro,
        "bench-capacity": bench_capacity,
        "bench-peers": bench_peers,
        "bench-serving": bench_serving,
        "bench-grpc": bench_grpc,
        "bench-watch": bench_watch,
        "cluster": cluster,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
