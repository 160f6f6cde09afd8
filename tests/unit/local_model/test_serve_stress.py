"""The model server against slow, impatient and oversized clients, over real HTTP (uvicorn in a child
process). The load numbers (memory after a burst, /ping during one, captures of a burst) are measured by
benchmarks/serve_stress.py, not timed here."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from scones.local.model_server import ModelServer
from tests.helpers.image_samples import make_model_dir, png_rgba

TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = make_model_dir(tmp_path_factory.mktemp("model"))
    env = {
        "SCONES_HEADER_TIMEOUT_SECONDS": str(TIMEOUT_S),
        "SCONES_BODY_TIMEOUT_SECONDS": str(TIMEOUT_S),
        "SCONES_MAX_BODY_BYTES": "1000000",
    }
    with ModelServer(model_dir, env=env, log_path=tmp_path_factory.mktemp("log") / "server.log") as running:
        yield running


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def send_and_read_until_closed(server, payload: bytes, wait_s: float = 10) -> tuple[bytes, float]:
    with socket.create_connection(address(server), timeout=wait_s) as sock:
        sock.sendall(payload)
        started, received = time.monotonic(), b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received, time.monotonic() - started


def test_a_client_that_never_finishes_its_headers_gets_408_and_is_closed(server):
    received, took = send_and_read_until_closed(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
    assert received.startswith(b"HTTP/1.1 408")
    assert TIMEOUT_S * 0.8 <= took < 5


def test_a_client_that_stops_in_the_middle_of_its_body_gets_408(server):
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    received, took = send_and_read_until_closed(server, head + bytes(500))
    assert received.startswith(b"HTTP/1.1 408")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"] == "SlowBodyError"
    assert took < 5


def test_a_keep_alive_connection_gets_the_header_deadline_again_after_a_response(server):
    connection = http.client.HTTPConnection(*address(server), timeout=10)
    connection.request("POST", "/invocations", body=png_rgba(), headers={"Content-Type": "image/png"})
    assert connection.getresponse().read() and True
    time.sleep(TIMEOUT_S * 2)  # idle past the deadline: the server has closed the connection
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("POST", "/invocations", body=png_rgba(), headers={"Content-Type": "image/png"})
        connection.getresponse().read()
    connection.close()


def test_an_oversized_body_with_connection_close_gets_a_json_413_not_a_reset(server):
    connection = http.client.HTTPConnection(*address(server), timeout=30)
    body = bytes(10 * 2**20)
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "image/png", "Connection": "close"})
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "BodyTooLargeError"
    connection.close()


def test_a_client_that_disconnects_mid_body_is_no_error_and_the_server_carries_on(server):
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection(address(server), timeout=5) as sock:
        sock.sendall(head + bytes(1000))
    time.sleep(0.3)
    connection = http.client.HTTPConnection(*address(server), timeout=10)
    connection.request("POST", "/invocations", body=png_rgba(), headers={"Content-Type": "image/png"})
    assert connection.getresponse().status == 200
    connection.close()
    log = server.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
