"""One candidate server of ``bench/serving.py`` around ``bench.serving_app``, in this process.

    python bench/serving_server.py waitress --port P      # waitress.serve, 8 threads
    python bench/serving_server.py naming --port P        # server.serving.NamingServer,
                                                          #   /empty and /work on the loop
    python bench/serving_server.py naming-pool --port P   # the same, every route on a worker

The bench starts it as its own process and stops it by PID (SIGTERM). granian is started from
its own CLI instead (it forks the process that runs the application).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving_app import application  # noqa: E402

# What the node runs with (runnode's defaults): 32 workers, room for 10,000 connections.
NAMING_THREADS = 32
CONNECTION_LIMIT = 10_000
WAITRESS_THREADS = 8
# /slow waits 200 ms: on the loop it would stop every other connection, so it goes to workers.
LOOP_PATHS = frozenset({"/empty", "/work"})


def raise_descriptor_limit() -> int:
    """The soft RLIMIT_NOFILE raised to the hard one (as the node does at start); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("waitress", "naming", "naming-pool"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    fd_limit = raise_descriptor_limit()
    if args.kind == "waitress":
        import waitress

        # The previous stack's settings: poll() (select() cannot watch descriptors past 1024)
        # and a connection limit far above waitress's default 100, which alone would make
        # 5,000 idle connections impossible.
        waitress.serve(
            application,
            host=args.host,
            port=args.port,
            threads=WAITRESS_THREADS,
            connection_limit=CONNECTION_LIMIT,
            asyncore_use_poll=True,
            backlog=2048,
            _quiet=True,
        )
        return 0
    from server.serving import NamingServer, bounded_connection_limit

    server = NamingServer(
        application,
        args.host,
        args.port,
        threads=NAMING_THREADS,
        connection_limit=bounded_connection_limit(CONNECTION_LIMIT, fd_limit),
        fd_limit=fd_limit,
        loop_paths=LOOP_PATHS if args.kind == "naming" else frozenset(),
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
