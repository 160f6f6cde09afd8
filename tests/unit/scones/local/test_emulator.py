"""scones.local.emulator.is_ministack tells the two emulators apart by ministack's own health path."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scones.local.emulator import MINISTACK_HEALTH_PATH, is_ministack
from scones.local.supervisor import free_port


def serve(paths_answered: set[str]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in paths_answered else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("answered", "expected"),
    [({MINISTACK_HEALTH_PATH, "/_localstack/health"}, True), ({"/_localstack/health"}, False)],
    ids=["ministack", "localstack"],
)
def test_is_ministack_by_its_health_path(answered, expected):
    server = serve(answered)
    try:
        assert is_ministack(f"http://127.0.0.1:{server.server_address[1]}/") is expected
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_is_not_ministack():
    assert is_ministack(f"http://127.0.0.1:{free_port()}", timeout_s=1) is False
