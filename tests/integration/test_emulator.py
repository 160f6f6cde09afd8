"""The embedded emulator's lifecycle: start on a free 127.0.0.1 port, readiness, clean stop, reuse of
AWS_ENDPOINT_URL, and clear failures."""

from __future__ import annotations

import os
import socket

import boto3
import pytest

from scones.local.emulator import (
    EmulatorError,
    EmulatorPortTakenError,
    Ministack,
    emulator_endpoint,
    is_reachable,
)
from tests.helpers.aws_environment import aws_environment_for

pytestmark = pytest.mark.integration


def test_ministack_starts_answers_and_stops(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # must not leak into ministack
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:9")
    emulator = Ministack()
    with emulator:
        url = emulator.endpoint_url
        assert url.startswith("http://127.0.0.1:")
        assert is_reachable(url)
        environment = emulator.child_environment()
        assert not any(name.startswith("AWS_ENDPOINT_URL") for name in environment)
        assert environment["BIND_HOST"] == "127.0.0.1"
        with aws_environment_for(url):
            assert os.environ["AWS_ENDPOINT_URL"] == url
            assert "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME" not in os.environ
            boto3.client("s3").create_bucket(Bucket="scones-emulator-test")
            assert [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]] == ["scones-emulator-test"]
        assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"  # restored
    assert not is_reachable(url)


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(EmulatorPortTakenError, match="is taken"):
            Ministack(port=busy.getsockname()[1]).start()


def test_a_configured_emulator_is_reused_when_it_answers():
    with Ministack() as running, emulator_endpoint({"AWS_ENDPOINT_URL": running.endpoint_url}) as url:
        assert url == running.endpoint_url


def test_a_configured_emulator_that_does_not_answer_is_a_failure():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with (
        pytest.raises(EmulatorError, match="does not answer"),
        emulator_endpoint({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}),
    ):
        pass
