"""The production WSGI server, run inside the node process (never a second process).

waitress: pure Python, threads in this process, binds at construction so a starting node
answers instead of refusing connections. The measurement behind the choice is in the README.
"""

from __future__ import annotations

from typing import Any

from waitress.server import create_server

from server.wsgi import application


def make_server(host: str, port: int, threads: int) -> Any:
    return create_server(
        application,
        host=host,
        port=port,
        threads=threads,
        ident="nacos-py",
        backlog=2048,
        connection_limit=2000,
        channel_timeout=120,
        # Nacos clients send everything in the query string; keep headers and bodies bounded.
        max_request_header_size=64 * 1024,
        max_request_body_size=8 * 1024 * 1024,
        clear_untrusted_proxy_headers=True,
    )
