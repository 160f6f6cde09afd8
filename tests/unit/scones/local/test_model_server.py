"""Tests of scones.local.model_server: a real `python -m local_model.serve` child process, started and stopped."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest

from local_model.capture_reader import read_captured_inferences
from scones.local.model_server import (
    ModelReloadError,
    ModelServer,
    ModelServerError,
    ModelServerStartError,
    PortInUseError,
)
from scones.local.supervisor import free_port, is_port_free
from tests.helpers.image_samples import make_model_dir, png_rgba


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"))


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def invoke(url: str, body: bytes) -> list[float]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_starts_on_a_free_port_answers_and_stops(model_dir, tmp_path):
    server = ModelServer(model_dir, log_path=tmp_path / "server.log")
    with pytest.raises(ModelServerError, match="not been started"):
        _ = server.url
    with server:
        assert server.running
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert get(f"{server.url}/ping") == (200, {"status": "healthy", "model_version": 1, "reloads": 0})
        assert len(invoke(server.url, png_rgba())) == 2
        port = server.port
    assert not server.running
    assert is_port_free("127.0.0.1", port)
    log = (tmp_path / "server.log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log and "POST /invocations" in log


def test_taken_port_is_a_named_error(model_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=str(port)):
            ModelServer(model_dir, port=port).start()


def test_unloadable_model_fails_fast_naming_the_reason_and_the_log(tmp_path):
    server = ModelServer(tmp_path / "no-model-here", log_path=tmp_path / "server.log")
    with pytest.raises(ModelServerStartError) as error:
        server.start()
    message = str(error.value)
    assert "ModelFormatError" in message and "model.json" in message
    assert str(tmp_path / "server.log") in message
    assert not server.running


def test_server_that_dies_is_reported_with_its_exit_code_and_log(model_dir, tmp_path):
    server = ModelServer(model_dir, env={"SCONES_MAX_BODY_BYTES": "lots"}, log_path=tmp_path / "server.log")
    with pytest.raises(ModelServerStartError) as error:
        server.start()
    message = str(error.value)
    assert "exited with code" in message and str(tmp_path / "server.log") in message
    assert "SCONES_MAX_BODY_BYTES='lots'" in message  # the log's tail names the problem


def test_startup_deadline_is_a_named_error(model_dir, tmp_path):
    server = ModelServer(model_dir, startup_timeout_s=0, log_path=tmp_path / "server.log")
    with pytest.raises(ModelServerStartError, match=r"did not answer .*/ping within 0 s"):
        server.start()
    assert not server.running


def test_capture_settings_reach_the_child_process(model_dir, tmp_path):
    destination = tmp_path / "capture"
    with ModelServer(
        model_dir, capture_destination=destination, capture_sampling_percentage=100, endpoint_name="child-endpoint"
    ) as server:
        invoke(server.url, png_rgba(seed=4))
    (captured,) = read_captured_inferences(destination)
    assert captured.endpoint_name == "child-endpoint" and captured.input_body == png_rgba(seed=4)


def test_starting_twice_is_refused(model_dir):
    with ModelServer(model_dir) as server, pytest.raises(ModelServerError, match="already started"):
        server.start()


def test_a_killed_server_loses_its_buffered_captures_and_restarts_on_the_same_port(model_dir, tmp_path):
    destination = tmp_path / "capture"
    server = ModelServer(
        model_dir, port=free_port(), capture_destination=destination, env={"SCONES_CAPTURE_FLUSH_SECONDS": "3600"}
    )
    with server:
        invoke(server.url, png_rgba(seed=6))
        status, health = get(f"{server.url}/ping")
        assert (status, health["capture"]["records_buffered"]) == (200, 1)
        port, pid = server.port, server.pid
        server.kill()  # SIGKILL: no flush, unlike stop()
        assert not server.running and is_port_free("127.0.0.1", port)
        server.start()
        assert (server.port, server.running) == (port, True) and server.pid != pid
        assert get(f"{server.url}/ping")[1]["capture"]["records_buffered"] == 0
    assert list(read_captured_inferences(destination)) == []  # the killed one flushed nothing


def test_reload_swaps_in_a_new_model_while_answering_and_keeps_the_old_one_when_the_new_is_broken(tmp_path):
    """SIGHUP (ModelServer.reload): the same process loads the model directory again; requests meanwhile are all
    answered; a directory that no longer holds a model is reported and the loaded model keeps serving."""
    served = make_model_dir(tmp_path / "model", seed=0)
    image = png_rgba(seed=3)
    with ModelServer(served, log_path=tmp_path / "server.log") as server:
        pid, before = server.pid, invoke(server.url, image)
        make_model_dir(served, seed=1)  # "retrained": other weights in the same place
        answers, stop = [], threading.Event()

        def keep_asking():
            while not stop.is_set():
                answers.append(invoke(server.url, image))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            assert server.reload() == 2
        finally:
            stop.set()
            asker.join()
        after = invoke(server.url, image)
        assert after != pytest.approx(before) and server.pid == pid
        assert answers and all(len(a) == 2 for a in answers)  # every request during the reload was answered

        (served / "model.json").write_text("not json")
        with pytest.raises(ModelReloadError, match="keeps serving the previous one"):
            server.reload()
        assert invoke(server.url, image) == pytest.approx(after)
        health = get(f"{server.url}/ping")[1]
        assert health["model_version"] == 2 and health["reloads"] == 2 and "ModelFormatError" in health["reload_error"]
