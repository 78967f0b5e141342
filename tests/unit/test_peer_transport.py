"""The HTTP peer transport against a real keep-alive server that is then killed (-9)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from distro.transport import HttpPeerTransport, PeerUnreachable
from testkit.harness import free_port, wait_for

SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    peer = f"127.0.0.1:{port}"
    probe = HttpPeerTransport("127.0.0.1:1", b"k")
    wait_for(lambda: probe.call(peer, "GET", "/").ok, 10, 0.05, "test server up")
    try:
        yield proc, peer
    finally:
        proc.kill()
        proc.wait(10)


def test_connections_are_kept_alive_and_reused(server):
    _, peer = server
    transport = HttpPeerTransport("127.0.0.1:1", b"k")
    for _ in range(5):
        assert transport.call(peer, "GET", "/").body == b"ok"
    assert sum(len(v) for v in transport._idle.values()) == 1


def test_a_killed_peer_is_reported_refused_even_with_many_stale_connections(server):
    proc, peer = server
    transport = HttpPeerTransport("127.0.0.1:1", b"k")
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        transport.call(peer, "GET", "/")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(len(v) for v in transport._idle.values()) >= 2, "several idle connections"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with pytest.raises(PeerUnreachable) as caught:
        transport.call(peer, "GET", "/")
    assert caught.value.refused
